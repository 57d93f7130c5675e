-- glidemq_version: the library's version, checked by the loader.
-- KEYS: none.  ARGV: none.
-- Returns: integer LIBRARY_VERSION.
redis.register_function{
  function_name = 'glidemq_version',
  callback = function(keys, args) return LIBRARY_VERSION end,
  flags = {'no-writes'},
}
