"""
The invariant-checking fault harness (issue #14): a workload of real,
independent clients, faults injected at moments drawn from a printed seed,
and a checker of the invariants afterwards. Run it from the test suite
(tests/e2e/test_chaos.py, the CI profile) or as a soak
(C{bash scripts/soak.sh --topology all --duration 1800}); see
docs/reliability.md.

Modules: L{topology} (the servers), L{proxy} (the TCP proxy that cuts
connections), L{faults}, L{clients}, L{journal} (what the clients saw),
L{scenario} (one run), L{checker} (the invariants), L{report} (the table).
"""
