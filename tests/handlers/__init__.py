"""Handler modules the sandbox tests run inside real child processes."""
