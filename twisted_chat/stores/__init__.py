"""
Where messages are kept on one node: in memory, or in SQLite (the default).
A cluster's shared store is in L{twisted_chat.cluster}.
"""
