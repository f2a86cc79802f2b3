"""SGLang decode tokens/s with and without MTP (NEXTN) speculative decoding, on the good-draft preset.

Draft preset checkpoint (its MTP draft agrees with the target most of the time, see common/testing/draft.py),
served bf16 on CPU by ``sglang.launch_server`` with this plugin (one core, as in the tests), 16-token
prompts, 64 new tokens (EOS ignored), greedy, batch 1 and 8 (one /generate call carrying the batch);
median of several timed runs after a warm-up. The NEXTN server uses LongCat-Flash's official flags;
its acceptance (accepted / proposed draft tokens) is SGLang's own count over the timed runs.

Run: $(scripts/venv.sh sglang)/bin/python benchmarks/sglang_mtp.py
"""

import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from timing import median_seconds  # noqa: E402
from workload import NEW_TOKENS, PROMPT_LEN, prompts  # noqa: E402

from tests.sglang.server import sglang_server  # noqa: E402
from tests.sglang.mtp_checks import nextn_args  # noqa: E402

BATCHES, REPEATS = (1, 8), 3


def rates(ckpt: Path, log: Path, args: list[str]) -> tuple[dict[int, float], dict[int, float | None]]:
    """(decode tokens/s, accepted / proposed draft tokens) per batch size."""
    speed, acceptance = {}, {}
    with sglang_server(ckpt, log, args) as server:
        for batch in BATCHES:
            counts = []

            def run():
                body = {"input_ids": prompts(batch), "sampling_params": {
                    "max_new_tokens": NEW_TOKENS, "temperature": 0.0, "ignore_eos": True}}
                r = requests.post(f"{server.url}/generate", json=body, timeout=1200)
                r.raise_for_status()
                metas = [out["meta_info"] for out in r.json()]
                counts.append([(m.get("spec_num_correct_drafts", 0), m.get("spec_num_proposed_drafts", 0))
                               for m in metas])
            speed[batch] = batch * NEW_TOKENS / median_seconds(run, REPEATS)
            accepted, proposed = (sum(c[i] for runs in counts[1:] for c in runs) for i in (0, 1))
            acceptance[batch] = accepted / proposed if proposed else None
    return speed, acceptance


def main() -> None:
    from longcat_common.testing.tiny import write_checkpoint

    work = Path(tempfile.mkdtemp(prefix="longcat-sglang-mtp-"))
    ckpt = write_checkpoint(work / "ckpt", preset="draft")
    base, _ = rates(ckpt, work / "plain.log", ["--dtype", "bfloat16"])
    spec, acceptance = rates(ckpt, work / "nextn.log", nextn_args(ckpt, "bfloat16"))
    print(f"\nSGLang decode tokens/s, draft preset, bf16, {PROMPT_LEN}-token prompts, {NEW_TOKENS} new tokens, "
          f"median of {REPEATS}")
    print(f"{'batch':>5} | {'no MTP':>7} | {'NEXTN':>7} | {'ratio':>6} | {'acceptance':>10}")
    for batch in BATCHES:
        print(f"{batch:>5} | {base[batch]:>7.1f} | {spec[batch]:>7.1f} | {spec[batch] / base[batch]:>5.2f}x | "
              f"{acceptance[batch]:>10.2f}")


if __name__ == "__main__":
    main()
