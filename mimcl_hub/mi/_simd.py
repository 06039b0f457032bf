"""Eight-lane float64 vector registers for numba kernels, written as LLVM IR intrinsics.

numba compiles scalar loops well but does not reliably vectorise loops whose state lives in small
arrays (a sorted list of the k smallest values, per lane): its loop vectoriser sees the heap arrays
as possibly aliased and its SLP vectoriser is off by default. These intrinsics say the vector code
directly. A kernel asks for a *register file*, ``regs = vregs(k)``: ``FIXED_SLOTS + k`` vectors of
``LANES`` doubles in one stack slot of the compiled function. Every access is to a whole slot at a
constant index, so LLVM keeps the slots in vector registers (zmm with AVX-512, pairs of ymm with
AVX2, NEON on ARM) across the kernel's loops.

Slot numbers and ``k`` must be literal integers at the call site (module constants, or constants
the jitted function closes over, as ``_ksg_cpu._make_pairs_kernel`` does for k), because the IR
addresses the slots by constant index. Addresses are plain integers (``array.ctypes.data`` plus
byte offsets) of 8 consecutive float64 values; loads and stores are unaligned. The register file is
a stack slot of the function that called ``vregs`` (one per call of it, reused by every loop
iteration): use it only there.

Slots ``0 .. FIXED_SLOTS - 1`` are free for the kernel (a *count slot* holds int64 lanes: fill it
with 0.0, add with ``vcount_*``, read with ``vlane_count``); ``FIXED_SLOTS .. FIXED_SLOTS + k - 1`` hold
the *k-smallest network* (``vnet_*``): per lane, the k smallest values seen so far, ascending.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
FIXED_SLOTS = 4  # general-purpose slots before the network

_F64 = ir.DoubleType()
_VEC = ir.VectorType(_F64, LANES)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_IVEC = ir.VectorType(_I64, LANES)
_ALL_LANES = (1 << LANES) - 1

__all__ = [
    "LANES",
    "FIXED_SLOTS",
    "vregs",
    "vfill",
    "vload",
    "vstore",
    "vlane",
    "vlane_count",
    "vmax_absdiff",
    "vcount_below",
    "vcount_scalar_below",
    "vnet_init",
    "vnet_insert",
    "vnet_done",
    "vnet_kth",
    "vadd_psi",
]


# ----------------------------------------------------------------------------------------------
# IR helpers (run at compile time)
# ----------------------------------------------------------------------------------------------


def _literal(value) -> int | None:
    """The literal int of a numba type, or None (numba then retries typing / reports no match)."""
    if isinstance(value, types.IntegerLiteral):
        return int(value.literal_value)
    return None


def _fixed_slots(*values) -> tuple[int, ...] | None:
    """The literal slot numbers, or None unless every one is a literal in 0 .. FIXED_SLOTS − 1."""
    slots = tuple(_literal(v) for v in values)
    if any(m is None or not 0 <= m < FIXED_SLOTS for m in slots):
        return None
    return slots


def _file(builder, regs_addr, nslots: int):
    return builder.inttoptr(regs_addr, ir.ArrayType(_VEC, nslots).as_pointer())


def _slot(builder, base, m: int):
    return builder.gep(base, [ir.Constant(_I32, 0), ir.Constant(_I32, m)], inbounds=True)


def _splat(builder, x):
    v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _load_mem(builder, addr):
    return builder.load(builder.inttoptr(addr, _VEC.as_pointer()), align=8)


def _vmin(builder, x, y):  # x < y ? x : y — one vminpd
    return builder.select(builder.fcmp_ordered("<", x, y), x, y)


def _vmax(builder, x, y):  # x > y ? x : y — one vmaxpd
    return builder.select(builder.fcmp_ordered(">", x, y), x, y)


def _count_if(builder, slot_ptr, cond):
    """Count slot (int64 lanes in a double slot) += cond per lane: an integer subtract of the
    sign-extended mask, one cycle of latency, so a loop of counts is not bound by an add chain."""
    counts = builder.bitcast(builder.load(slot_ptr), _IVEC)
    counts = builder.sub(counts, builder.sext(cond, _IVEC))
    builder.store(builder.bitcast(counts, _VEC), slot_ptr)


# Every intrinsic addresses at most FIXED_SLOTS + k slots; those that do not touch the network see a
# file of FIXED_SLOTS slots, which is a prefix of the real one (same layout), so they need no k.


# ----------------------------------------------------------------------------------------------
# register file
# ----------------------------------------------------------------------------------------------


@intrinsic
def vregs(typingctx, k):
    """Allocate a register file of FIXED_SLOTS + k vectors (k literal); returns its address (int64)."""
    kv = _literal(k)
    if kv is None or kv < 0:
        return None

    def codegen(context, builder, sig, args):
        slots = cgutils.alloca_once(builder, ir.ArrayType(_VEC, FIXED_SLOTS + kv))
        return builder.ptrtoint(slots, _I64)

    return types.int64(k), codegen


@intrinsic
def vfill(typingctx, regs, m, x):
    """slot m ← x in every lane."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        builder.store(_splat(builder, args[2]), _slot(builder, _file(builder, args[0], FIXED_SLOTS), mv))
        return context.get_dummy_value()

    return types.none(types.int64, m, types.float64), codegen


@intrinsic
def vload(typingctx, regs, m, addr):
    """slot m ← the 8 doubles at addr."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        builder.store(_load_mem(builder, args[2]), _slot(builder, _file(builder, args[0], FIXED_SLOTS), mv))
        return context.get_dummy_value()

    return types.none(types.int64, m, types.int64), codegen


@intrinsic
def vstore(typingctx, regs, m, addr):
    """the 8 doubles at addr ← slot m."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        v = builder.load(_slot(builder, _file(builder, args[0], FIXED_SLOTS), mv))
        builder.store(v, builder.inttoptr(args[2], _VEC.as_pointer()), align=8)
        return context.get_dummy_value()

    return types.none(types.int64, m, types.int64), codegen


@intrinsic
def vlane(typingctx, regs, m, lane):
    """Lane ``lane`` (0..7) of slot m, as a float64."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        v = builder.load(_slot(builder, _file(builder, args[0], FIXED_SLOTS), mv))
        return builder.extract_element(v, args[2])

    return types.float64(types.int64, m, types.int64), codegen


@intrinsic
def vlane_count(typingctx, regs, m, lane):
    """Lane ``lane`` (0..7) of the count slot m, as an int64."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        v = builder.bitcast(builder.load(_slot(builder, _file(builder, args[0], FIXED_SLOTS), mv)), _IVEC)
        return builder.extract_element(v, args[2])

    return types.int64(types.int64, m, types.int64), codegen


@intrinsic
def vmax_absdiff(typingctx, regs, m, addr_x, addr_y):
    """slot m ← max(slot m, |x − y|) with x, y the 8 doubles at addr_x, addr_y (a max-norm step)."""
    slots = _fixed_slots(m)
    if slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        p = _slot(builder, _file(builder, args[0], FIXED_SLOTS), mv)
        diff = builder.fsub(_load_mem(builder, args[2]), _load_mem(builder, args[3]))
        absdiff = _vmax(builder, diff, builder.fneg(diff))
        builder.store(_vmax(builder, builder.load(p), absdiff), p)
        return context.get_dummy_value()

    return types.none(types.int64, m, types.int64, types.int64), codegen


@intrinsic
def vcount_below(typingctx, regs, m, addr, src, inclusive):
    """Count slot m += (x < slot src), or (x <= slot src) when ``inclusive`` is literal 1; x at addr."""
    slots, inc = _fixed_slots(m, src), _literal(inclusive)
    if slots is None or inc is None:
        return None
    mv, sv = slots

    def codegen(context, builder, sig, args):
        base = _file(builder, args[0], FIXED_SLOTS)
        p = _slot(builder, base, mv)
        cond = builder.fcmp_ordered("<=" if inc else "<", _load_mem(builder, args[2]), builder.load(_slot(builder, base, sv)))
        _count_if(builder, p, cond)
        return context.get_dummy_value()

    return types.none(types.int64, m, types.int64, src, inclusive), codegen


@intrinsic
def vcount_scalar_below(typingctx, regs, m, a, src):
    """Count slot m += (a < slot src), a one scalar compared with every lane."""
    slots = _fixed_slots(m, src)
    if slots is None:
        return None
    mv, sv = slots

    def codegen(context, builder, sig, args):
        base = _file(builder, args[0], FIXED_SLOTS)
        p = _slot(builder, base, mv)
        cond = builder.fcmp_ordered("<", _splat(builder, args[2]), builder.load(_slot(builder, base, sv)))
        _count_if(builder, p, cond)
        return context.get_dummy_value()

    return types.none(types.int64, m, types.float64, src), codegen


@intrinsic
def vadd_psi(typingctx, regs, m, cx, cy, psi_addr):
    """slot m += psi[cx + 1] + psi[cy + 1] per lane, cx and cy count slots."""
    slots = _fixed_slots(m, cx, cy)
    if slots is None:
        return None
    mv, xv, yv = slots

    def codegen(context, builder, sig, args):
        base = _file(builder, args[0], FIXED_SLOTS)
        psi = builder.inttoptr(args[4], _F64.as_pointer())
        nx = builder.bitcast(builder.load(_slot(builder, base, xv)), _IVEC)
        ny = builder.bitcast(builder.load(_slot(builder, base, yv)), _IVEC)
        add = ir.Constant(_VEC, ir.Undefined)
        one = ir.Constant(_I64, 1)
        for lane in range(LANES):
            at = ir.Constant(_I32, lane)
            px = builder.load(builder.gep(psi, [builder.add(builder.extract_element(nx, at), one)]))
            py = builder.load(builder.gep(psi, [builder.add(builder.extract_element(ny, at), one)]))
            add = builder.insert_element(add, builder.fadd(px, py), at)
        p = _slot(builder, base, mv)
        builder.store(builder.fadd(builder.load(p), add), p)
        return context.get_dummy_value()

    return types.none(types.int64, m, cx, cy, types.int64), codegen


# ----------------------------------------------------------------------------------------------
# k-smallest network: slots FIXED_SLOTS .. FIXED_SLOTS + k − 1, ascending per lane
# ----------------------------------------------------------------------------------------------


def _net_slots(builder, regs_addr, k: int):
    base = _file(builder, regs_addr, FIXED_SLOTS + k)
    return [_slot(builder, base, FIXED_SLOTS + m) for m in range(k)]


@intrinsic
def vnet_init(typingctx, regs, k):
    """Empty the network: all k slots ← +inf."""
    kv = _literal(k)
    if kv is None or kv < 1:
        return None

    def codegen(context, builder, sig, args):
        inf = ir.Constant(_VEC, [float("inf")] * LANES)
        for p in _net_slots(builder, args[0], kv):
            builder.store(inf, p)
        return context.get_dummy_value()

    return types.none(types.int64, k), codegen


@intrinsic
def vnet_insert(typingctx, regs, k, a, addr):
    """x = max(a, the 8 doubles at addr); insert x into each lane's sorted k smallest.

    Branch-free: new[0] = min(old[0], x), new[m] = max(old[m−1], min(old[m], x)). Inserting a value
    not below the current k-th smallest leaves the list unchanged.
    """
    kv = _literal(k)
    if kv is None or kv < 1:
        return None

    def codegen(context, builder, sig, args):
        x = _vmax(builder, _splat(builder, args[2]), _load_mem(builder, args[3]))
        ptrs = _net_slots(builder, args[0], kv)
        old = [builder.load(p) for p in ptrs]
        new = [_vmin(builder, old[0], x)] + [_vmax(builder, old[m - 1], _vmin(builder, old[m], x)) for m in range(1, kv)]
        for p, v in zip(ptrs, new):
            builder.store(v, p)
        return context.get_dummy_value()

    return types.none(types.int64, k, types.float64, types.int64), codegen


@intrinsic
def vnet_done(typingctx, regs, k, a):
    """True when a >= the k-th smallest in every lane."""
    kv = _literal(k)
    if kv is None or kv < 1:
        return None

    def codegen(context, builder, sig, args):
        kth = builder.load(_net_slots(builder, args[0], kv)[kv - 1])
        ge = builder.fcmp_ordered(">=", _splat(builder, args[2]), kth)
        bits = builder.bitcast(ge, ir.IntType(LANES))
        return builder.icmp_unsigned("==", bits, ir.Constant(ir.IntType(LANES), _ALL_LANES))

    return types.boolean(types.int64, k, types.float64), codegen


@intrinsic
def vnet_kth(typingctx, regs, k, m):
    """slot m ← the network's k-th smallest (its last slot)."""
    kv, slots = _literal(k), _fixed_slots(m)
    if kv is None or kv < 1 or slots is None:
        return None
    (mv,) = slots

    def codegen(context, builder, sig, args):
        kth = builder.load(_net_slots(builder, args[0], kv)[kv - 1])
        builder.store(kth, _slot(builder, _file(builder, args[0], FIXED_SLOTS), mv))
        return context.get_dummy_value()

    return types.none(types.int64, k, m), codegen
