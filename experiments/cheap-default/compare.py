"""Paired by seed: the cheap default's WPPG-I runs (experiments/cheap-default/runs, or a campaign's
--out) against the mujoco-cpu suite's WPPG-I (preset "cpu") and SAC of the same seeds, on every env
both have: final return and mean of the last 5 evaluations (policy's mode), paired differences with
bootstrap CIs, and the probability of improvement (experiments/tools/paired.py). Writes
experiments/cheap-default/paired-{wppg-i,sac}.json.

    python experiments/cheap-default/compare.py [NEW_DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from paired import main  # noqa: E402

NEW = sys.argv[1] if len(sys.argv) > 1 else "experiments/cheap-default/runs"
HERE = Path(__file__).resolve().parent
for reference in ("wppg-i", "sac"):
    print(f"\n===== the default WPPG-I (B) against the suite's {reference} (A) =====")
    main(
        [f"experiments/mujoco-cpu/runs:{reference}", f"{NEW}:wppg-i", "--json", str(HERE / f"paired-{reference}.json")]
    )
