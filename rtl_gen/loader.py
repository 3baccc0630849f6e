"""Weight loader shared by the engines: reads i_w (int16[mac_cols] words) in the documented
order and fills (1) the LayerNorm unit's parameters, (2) a ping-pong weight buffer, one m-tile
(bias in three 16-bit chunks, then K words) per bank. `full[b]` is set when bank b is loaded and
cleared by the engine when the last use of the bank (its drain) is done."""
from __future__ import annotations

from amaranth.hdl import Array, Mux, Signal, signed
from amaranth.lib import data, memory

from .arith import ACC_BITS, WORD


def chunk(reg, i, word):
    """Assign 16-bit slice i of a 48-bit register."""
    return reg[16 * i:16 * (i + 1)].eq(word)


class WeightLoader:
    def __init__(self, m, i_w, ln, dim: int, cols: int, layers: list[tuple[int, int]]):
        """layers: (m-tiles, K) of each linear layer in stream order."""
        C = cols
        self.m = m
        self.km = km = max(k for _, k in layers)
        total = sum(n for n, _ in layers)
        m.submodules.wbuf = wbuf = memory.Memory(shape=data.ArrayLayout(signed(WORD), C), depth=2 * km, init=[])
        w_w = wbuf.write_port()
        self.read = wbuf.read_port(domain="comb")
        self.full = full = [Signal(name=f"bank_full{b}") for b in range(2)]
        self.bias = bias = [[Signal(signed(ACC_BITS), name=f"bias{b}_{c}") for c in range(C)] for b in range(2)]
        gam = [Signal(signed(WORD), name=f"gamma_{c}") for c in range(C)]
        bet = [Signal(signed(ACC_BITS), name=f"beta_{c}") for c in range(C)]
        lw, lg, ser = Signal(range(4)), Signal(range(max(dim // C, 2))), Signal(range(C))
        wmt, wk = Signal(range(total + 1)), Signal(range(km + 3))
        wbank = wmt[0]
        wlen = Signal(range(km + 1))
        bound = 0
        acc_bounds = []
        for n, k in layers:
            bound += n
            acc_bounds.append((bound, k))
        expr = acc_bounds[-1][1]
        for b, k in reversed(acc_bounds[:-1]):
            expr = Mux(wmt < b, k, expr)
        m.d.comb += wlen.eq(expr)
        w_in = i_w.payload

        m.d.comb += [ln.i_param.payload.gamma.eq(Array(gam)[ser]), ln.i_param.payload.beta.eq(Array(bet)[ser])]
        m.d.comb += [w_w.addr.eq(Mux(wbank, km, 0) + wk - 3), w_w.data.eq(w_in)]
        with m.FSM(name="loader"):
            with m.State("LN_RX"):
                m.d.comb += i_w.ready.eq(1)
                with m.If(i_w.valid):
                    for c in range(C):
                        with m.Switch(lw):
                            with m.Case(0):
                                m.d.sync += gam[c].eq(w_in[c])
                            for i in range(3):
                                with m.Case(i + 1):
                                    m.d.sync += chunk(bet[c], i, w_in[c])
                    m.d.sync += lw.eq(lw + 1)
                    with m.If(lw == 3):
                        m.d.sync += [lw.eq(0), ser.eq(0)]
                        m.next = "LN_TX"
            with m.State("LN_TX"):
                m.d.comb += ln.i_param.valid.eq(1)
                with m.If(ln.i_param.ready):
                    m.d.sync += ser.eq(ser + 1)
                    with m.If(ser == C - 1):
                        m.d.sync += lg.eq(lg + 1)
                        with m.If(lg == dim // C - 1):
                            m.d.sync += [lg.eq(0), wmt.eq(0), wk.eq(0)]
                            m.next = "W_WAIT"
                        with m.Else():
                            m.next = "LN_RX"
            with m.State("W_WAIT"):
                with m.If(~Array(full)[wbank]):
                    m.next = "W_RX"
            with m.State("W_RX"):
                m.d.comb += i_w.ready.eq(1)
                with m.If(i_w.valid):
                    m.d.sync += wk.eq(wk + 1)
                    with m.If(wk < 3):
                        for b in range(2):
                            with m.If(wbank == b):
                                for i in range(3):
                                    with m.If(wk == i):
                                        m.d.sync += [chunk(bias[b][c], i, w_in[c]) for c in range(C)]
                    with m.Else():
                        m.d.comb += w_w.en.eq(1)
                    with m.If(wk == wlen + 2):
                        m.d.sync += [Array(full)[wbank].eq(1), wmt.eq(wmt + 1), wk.eq(0)]
                        with m.If(wmt == total - 1):
                            m.next = "LN_RX"
                        with m.Else():
                            m.next = "W_WAIT"

    def bias_of(self, bank, col, cols: int):
        """bias[bank][col] (bank: 1-bit signal, col: range(cols) signal) as one mux into a
        signal: arithmetic on an Array lookup itself would be copied into every element."""
        sel = Signal(signed(ACC_BITS), name="bias_sel")
        self.m.d.comb += sel.eq(Array(self.bias[0] + self.bias[1])[bank * cols + col])
        return sel

    def addr(self, bank, k):
        return Mux(bank, self.km, 0) + k
