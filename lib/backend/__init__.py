"""Node side of the RPC procedures, one module per domain.

The node daemon (server/noded.py) finds each function through the procedure
table (rpc/procedures.py, ``backend`` column: ``"<module>.<function>"``)
and calls it with the checked keyword arguments in a worker thread.  A
function returns a JSON-serialisable result or raises a Corral error
(errors.*) whose message reaches the master verbatim; any other exception
is a bug and is logged with its traceback.  Functions must be safe to run
concurrently with each other.
"""
