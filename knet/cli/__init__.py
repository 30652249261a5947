"""The `knet` command line: thin, it parses, calls knet and control APIs, and prints.

Only this package prints; everything else logs.
"""
