"""Tether: a remote-support session broker and its customer client."""

__version__ = "0.1.0"
