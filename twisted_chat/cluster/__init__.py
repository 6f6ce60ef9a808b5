"""
Scale-out: several nodes, one conversation, through Redis.
"""
