"""Sans-I/O core shared by the broker and the client.

Nothing in this package imports asyncio, aiohttp, websockets or asyncssh
(``tests/protocol/test_sans_io.py`` checks this): it turns bytes and text
into validated values and back, so it can be tested in memory.
"""
