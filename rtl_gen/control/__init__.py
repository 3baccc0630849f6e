"""Control: the run controller (header and program fetch, the descriptor checks of golden/isa.py,
dispatch, errors), the stream loader that routes the data stream ahead of compute, and the
descriptor views every unit decodes through."""
