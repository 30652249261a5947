"""knet's userspace kube-proxy, one per node.

    config.py    ServiceHandler / EndpointSliceHandler, the ServicePort table, ConfigTracker
    balancer.py  LoadBalancer: round-robin/random/least-connections/source-hash + ClientIP
                 affinity, pure, clock passed in
    topology.py  which endpoints a node uses (conditions, traffic policies, PreferClose)
    proxier.py   Proxier (both handlers): table -> listeners + balancers, in the node netns
    refusals.py  REJECT (no listener) and DROP (socket filter), refused flows off raw sockets
    tcp.py       L4 TCP splice;  udp.py  L4 UDP flows;  http.py + httpup.py + http1.py  L7
    flows.py     FlowRecord, FlowRing (bounded, followable), flows_routes()/flows_app()
    (knet/servicesource.py feeds the handlers from two informers, for the proxy and DNS)
    agent.py     start_node_proxy(): what the node agent (and `knet proxy`) runs
"""
