// A small elementwise program evaluated in L1-sized chunks: the executor fuses chains of elementwise nodes
// (BatchNormalization affine, Add/Mul/Div by constants, Clip, HardSwish, x * HardSigmoid(x), residual Add, the SE
// channel scale, ...) into one pass, either after a Conv/MatMul tile while it is still in cache or standalone.
//
// The output tensor is viewed as [P, Q]: P = product of the leading dims, Q = product of the trailing dims (for an
// NCHW conv output P = N*C and Q = H*W). An operand is a scalar, a register, a row value (one value per p: a
// per-channel constant or an [N, C, 1, 1] tensor), a column vector (one value per q) or a full tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <quantsim/quant/rounding.hpp>

namespace quantsim {

enum class pw_op : std::uint8_t {
    // binary: dst = a (op) b
    add, sub, mul, div, min, max, pow,
    // unary on a (alpha/beta from the instruction)
    copy, neg, abs, relu, clip, hard_sigmoid, hard_swish, sigmoid, tanh, exp, log, sqrt, reciprocal, erf,
    leaky_relu, floor, ceil, gelu, softplus,
    /// Per-tensor fake quantization of a (quant_sim's activation quantizers): parameters in pw_program::quants,
    /// entry b.index (b.kind is none). Exactly the arithmetic of quant/fake_quant.hpp.
    fake_quant,
};

bool pw_is_binary(pw_op op) noexcept;
const char* pw_name(pw_op op) noexcept;

struct pw_operand {
    enum class kind : std::uint8_t {
        none,
        output,     ///< the output buffer as it was before the program ran (the fused producer's result)
        reg,        ///< a scratch register
        scalar,     ///< `value`
        const_row,  ///< program constant `index`, element p % period (p itself when period <= 0)
        const_col,  ///< program constant `index`, element q
        input_full, ///< runtime input `index`, element p * Q + q
        input_row,  ///< runtime input `index`, element p % period (p itself when period <= 0)
        input_col,  ///< runtime input `index`, element q
    };
    kind k = kind::none;
    int index = 0;
    float value = 0.0f;
    std::int64_t period = 1;

    static pw_operand output() { return {kind::output, 0, 0.0f, 1}; }
    static pw_operand reg(int r) { return {kind::reg, r, 0.0f, 1}; }
    static pw_operand scalar(float v) { return {kind::scalar, 0, v, 1}; }
};

struct pw_instr {
    pw_op op = pw_op::copy;
    int dst = -1;  ///< register, or -1 for the output (only the last instruction writes the output)
    pw_operand a, b;
    /// clip: [alpha, beta]; hard_sigmoid: clamp(alpha*x+beta, 0, 1); hard_swish: x * hard_sigmoid(x) (ONNX
    /// HardSwish: alpha = 1/6, beta = 0.5); leaky_relu: alpha
    float alpha = 0.0f, beta = 0.0f;
};

/// The per-tensor grid of a fake_quant instruction: y = round(clamp(x / scale, lo, hi)) * scale with lo = qmin - zp,
/// hi = qmax - zp (float compute: grids of up to 16 bits). Stochastic rounding uses the element's flat index p * Q + q
/// in the [P, Q] output and `key` = detail::stochastic_key(seed), like fake_quant on the whole tensor.
struct pw_quant {
    float scale = 1.0f, inv = 1.0f, lo = 0.0f, hi = 0.0f;
    rounding_mode rounding = rounding_mode::nearest_even;
    scale_arithmetic arithmetic = scale_arithmetic::divide;
    std::uint64_t key = 0;
};

/// y[i] = fake-quant of a[i] (a may equal y); element i has stochastic index idx0 + i.
void pw_fake_quant(const float* a, float* y, std::int64_t n, const pw_quant& fq, std::uint64_t idx0);

/// An elementwise program. Registers are scratch rows; `constants` are owned per-channel / per-column vectors.
class pw_program {
public:
    static constexpr int max_registers = 8;
    static constexpr std::int64_t chunk = 256;  ///< elements per evaluation step (registers are this long)

    std::vector<pw_instr> code;
    std::vector<std::vector<float>> constants;
    std::vector<pw_quant> quants;  ///< grids of the fake_quant instructions
    int num_registers = 0;

    bool empty() const noexcept { return code.empty(); }
    int add_constant(std::vector<float> values);

    /// Evaluates the program on row p, columns [q0, q0 + len) of the [P, Q] view. `out` points at element
    /// (p, q0) of the output; `inputs[i]` at element 0 of runtime input i.
    /// With AVX-512 the common ops run as inline 16-lane loops (results bit-identical to run_row_reference).
    void run_row(float* out, const float* const* inputs, std::int64_t p, std::int64_t q0, std::int64_t len,
                 std::int64_t Q) const;
    /// Evaluates elements [first, first + count) of the flattened [P, Q] view (any number of whole or partial
    /// rows); `out` points at element `first`. Results equal run_row on each row segment.
    void run_span(float* out, const float* const* inputs, std::int64_t first, std::int64_t count,
                  std::int64_t Q) const;
    /// The plain version: one reference building-block call per instruction and chunk (tests compare against it).
    void run_row_reference(float* out, const float* const* inputs, std::int64_t p, std::int64_t q0,
                           std::int64_t len, std::int64_t Q) const;

    /// Evaluates the whole [P, Q] output, in parallel over kernel_threads().
    void run(float* out, const float* const* inputs, std::int64_t P, std::int64_t Q) const;

    /// Human-readable listing (profiling labels, debugging).
    std::string describe() const;

    /// Largest fake_quant grid (hi - lo + 1) that compile() tabulates.
    static constexpr std::int64_t max_table_grid = 1024;
    /// Most floats (1 MiB) compile() spends on precomputed per-row tables (see row_table_at): 8-bit grids up to
    /// 1019 channels; wider layers fall back to run-time row tables on long rows.
    static constexpr std::int64_t max_row_tables = std::int64_t{1} << 18;
    /// Precomputes a shortcut for run_span/run_row (AVX-512 builds): the longest suffix of the program that starts
    /// at a deterministic fake_quant into a register and then reads only that grid value, its own registers and
    /// scalars is a function of the grid index, so it becomes a table of at most max_table_grid + 1 entries (NaN
    /// included) filled by evaluating the suffix itself: results are bit-identical (NaN payloads aside). E.g.
    /// quant_sim's decomposed hard-swish after a quantized BatchNormalization: 8 instructions become one lookup.
    /// Call after the program is complete; any later change of code or quants disables the table (checked per call)
    /// until compile() runs again.
    void compile();
    /// Index of the instruction where the table takes over (code.size() when none is in use).
    std::size_t table_at() const noexcept;
    /// The same with per-row constants allowed in the suffix: when those are program constants with one period
    /// (per-channel BatchNormalization), compile() precomputes a table per constant row (at most max_row_tables
    /// floats in all) and every row uses its own; otherwise row parts at least 4/3 of the grid size get a table
    /// built when the row is reached. code.size() when none is in use.
    std::size_t row_table_at() const noexcept;

private:
    struct lut_state {
        std::size_t at = 0;      ///< whole-program table from here (code.size(): none)
        std::vector<float> table;
        std::size_t row_at = 0;  ///< per-row tables from here (code.size(): none); before `at`
        std::shared_ptr<const pw_program> row_sub;  ///< the suffix from row_at, evaluated per row on the grid
        /// All row tables, when the suffix's per-row values are constants with one period: row_count tables of
        /// grid + 1 entries, row p uses table p % row_period (p itself when row_period is 0).
        std::vector<float> row_tables;
        std::int64_t row_period = 0, row_count = 0;
        /// When the program ends with a fake_quant into the output, every table entry but NaN's is
        /// (code_lo + j) * code_scale for a grid code j: codes of tables with at most 256 such entries, as bytes
        /// (`table`: 256 bytes; row_tables: 256 per row), looked up with byte permutes (AVX-512 VBMI); empty
        /// when some entry is not of that form.
        std::vector<std::uint8_t> codes, row_codes;
        float code_scale = 1.0f, code_lo = 0.0f;
        std::vector<pw_instr> code;    ///< what the table was built for
        std::vector<pw_quant> quants;
    };
    std::shared_ptr<const lut_state> lut_;
    bool lut_valid() const noexcept;

public:
};

/// dst[i] = op(a[i]) / op(a[i], b) on plain arrays: the building blocks the program and the unfused ops use.
void pw_apply_unary(pw_op op, const float* a, float* dst, std::int64_t n, float alpha = 0.0f, float beta = 0.0f);
/// b is an array (b_scalar ignored) when b != nullptr, else the scalar b_scalar. reversed: dst = b (op) a.
void pw_apply_binary(pw_op op, const float* a, const float* b, float b_scalar, float* dst, std::int64_t n,
                     bool reversed = false);

/// Scalar reference of one op (the plain version tests compare against).
float pw_eval_ref(pw_op op, float a, float b, float alpha, float beta);

}  // namespace quantsim
