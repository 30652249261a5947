"""knet's service mesh (issue 15): Gateway API (GAMMA) and Istio routing compiled into one
pure route table per node (`table.compile_table`), which the proxy's L7 path consults per
request (`match.find_route`, `match.pick_backend`)."""
