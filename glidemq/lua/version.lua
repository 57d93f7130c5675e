-- glidemq_version: the library's version, checked by the loader.
-- KEYS: none.  ARGV: none.
-- Returns: integer LIBRARY_VERSION.
redis.register_function{
  function_name = 'glidemq_version',
  callback = function(keys, args) return LIBRARY_VERSION end,
  flags = {'no-writes'},
}

-- glidemq_build: a hash of the library source, so a changed library with an
-- unchanged version number still replaces the loaded one.
-- KEYS: none.  ARGV: none.  Returns: hex string.
redis.register_function{
  function_name = 'glidemq_build',
  callback = function(keys, args) return LIBRARY_BUILD end,
  flags = {'no-writes'},
}
