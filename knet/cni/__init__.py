"""Pod networking behind the CNI 1.0 contract: `spec` (the contract, pure), `plugin` (knet's
built-in wiring as a plugin of type `knet`), `runtime` (the agent as the CNI runtime: conflist,
invocations of the built-in or the reference plugins, a log of each call)."""
