"""
The tests of twisted-chat. Every folder is a package, so test modules are
imported by their dotted names (tests.core.test_service) from the top of the
repository, and tests.support is importable from any of them.
"""
