"""Block wrapper: attention engine -> MLP engine (one DeiT block), one weight stream.

i_w carries, per job, the attention engine's words (rtl_gen.attention.weight_stream) followed
by the MLP engine's (rtl_gen.mlp.weight_stream); a counter routes them. i_x / o_y / n as the
attention engine; the MLP engine takes the attention engine's output tiles directly."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from .arith import WORD
from .attention import AttentionEngine, AttnFormats
from .config import HardwareConfig
from .layernorm import lanes_layout
from .mlp import MlpEngine, MlpFormats


def attn_words(d: int, cols: int) -> int:
    mp = d // cols
    return 4 * mp + 4 * mp * (3 + d)


def mlp_words(d: int, hidden: int, cols: int) -> int:
    return 4 * (d // cols) + (hidden // cols) * (3 + d) + (d // cols) * (3 + hidden)


def block_weight_stream(blk, cols: int) -> list[list[int]]:
    from . import attention, mlp
    return attention.weight_stream(blk, cols) + mlp.weight_stream(blk, cols)


class BlockEngine(wiring.Component):
    def __init__(self, attn: AttnFormats, mlp: MlpFormats, hw: HardwareConfig):
        self.attn_fmt, self.mlp_fmt, self.hw = attn, mlp, hw
        R, C = hw.mac_rows, hw.mac_cols
        super().__init__({
            "n": In(range(hw.n_max + 1)),
            "i_x": In(stream.Signature(lanes_layout(R, "x"))),
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), C))),
            "o_y": Out(stream.Signature(lanes_layout(R, "y"))),
        })

    @classmethod
    def from_block(cls, blk, hw):
        return cls(AttnFormats.from_block(blk), MlpFormats.from_block(blk), hw)

    def elaborate(self, platform):
        m = Module()
        C = self.hw.mac_cols
        m.submodules.attention = attn = AttentionEngine(self.attn_fmt, self.hw)
        m.submodules.mlp = mlp = MlpEngine(self.mlp_fmt, self.hw)
        na = attn_words(self.attn_fmt.dim, C)
        nm = mlp_words(self.mlp_fmt.dim, self.mlp_fmt.hidden, C)
        cnt = Signal(range(na + nm))
        to_mlp = cnt >= na
        m.d.comb += [attn.n.eq(self.n), attn.i_w.payload.eq(self.i_w.payload), mlp.i_w.payload.eq(self.i_w.payload),
                     attn.i_w.valid.eq(self.i_w.valid & ~to_mlp), mlp.i_w.valid.eq(self.i_w.valid & to_mlp),
                     self.i_w.ready.eq(Mux(to_mlp, mlp.i_w.ready, attn.i_w.ready))]
        with m.If(self.i_w.valid & self.i_w.ready):
            m.d.sync += cnt.eq(Mux(cnt == na + nm - 1, 0, cnt + 1))
        connect(m, wiring.flipped(self.i_x), attn.i_x)
        m.d.comb += [mlp.i_x.valid.eq(attn.o_y.valid), attn.o_y.ready.eq(mlp.i_x.ready),
                     mlp.i_x.payload.x.eq(attn.o_y.payload.y), mlp.i_x.payload.last.eq(attn.o_y.payload.last)]
        connect(m, mlp.o_y, wiring.flipped(self.o_y))
        return m
