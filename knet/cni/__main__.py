"""`python -m knet.cni`: knet's built-in pod wiring as a CNI plugin (see knet.cni.plugin)."""

from knet.cni.plugin import main

raise SystemExit(main())
