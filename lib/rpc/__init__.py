"""Master -> node daemon RPC.

- ``procedures``: the one table of node procedures (name, backend function,
  arguments, timeout class);
- ``wire``: the JSON reply format shared by client and node daemon;
- ``client``: ``RpcClient`` (parallel mTLS calls) and ``RpcResult``.

See doc/design-rpc.md.
"""
