-- glidemq_flow_register: make a job notify another job (under another root)
-- when it finishes: the cross-slot half of add(..., depends_on=[...]).
-- Idempotent: registering twice notifies once.
-- KEYS[1]  meta key of the dependency's queue
-- ARGV[1]  dependency job id    ARGV[2]  dependent ref "queue/id"
-- Returns: 0 registered: the dependent is notified when the job finishes;
--          1 the job already finished or does not exist: a notice for the
--            dependent is in this queue's outbox (relay it).
redis.register_function('glidemq_flow_register', function(keys, args)
  local P = prefix_of(keys[1])
  local kind, value, policy = link(P, args[1], args[2])
  if not kind then return 0 end
  local wq, wid = split_ref(args[2])
  push_notice(P, wq, wid, queue_name_of(P) .. '/' .. args[1], kind, value, policy)
  return 1
end)
