"""Peers the lab measures itself against: peer servers (nginx, uvicorn, Node, Express, the lab
itself in a process), wrk, and core pinning.
"""
