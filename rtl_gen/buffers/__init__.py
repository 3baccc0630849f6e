"""Buffers and what fills them: the buffer fabric (token buffers B0..B3, key buffer KB, value
banks VB), the two-slot weight ring, the activation table, the LOAD and STORE units, and the
port signatures the units share."""
