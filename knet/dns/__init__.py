"""knet's cluster DNS: `records` (Kubernetes objects -> an immutable zone snapshot), `wire`
(hand-parsed questions, pre-built answers), `server` (UDP/TCP on asyncio), `source`
(informers -> handlers), and `python -m knet.dns` (the process behind kube-dns)."""
