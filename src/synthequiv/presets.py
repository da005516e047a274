"""The study presets: each a set of overrides on the config's defaults (which are the `quick`
digits study), resolved by config.resolve as preset → --config YAML → --set."""

from __future__ import annotations

from typing import Any

# Each preset is a set of overrides on the defaults (which are the `quick` digits study).
PRESETS: dict[str, dict[str, Any]] = {
    # 3 replicates × 2 base sizes × (6 baseline seeds + (4 real + 2 closed + 2 open amounts) ×
    # 2 seeds) = 132 cells and 9 generators: the design whose interval coverage
    # benchmarks/coverage.py measured (intervals.MEASURED_COVERAGE)
    "quick": {},
    # quick + the levers (issue 15) on the closed arm: a 3-value guidance sweep and the paper's
    # filter (drop the bottom 20 %, q = 0.8: its pool needs only 40 extra images/class; q = 0.5
    # needs 160). Measured generator+sampling time of one replicate, one thread on the shared
    # 2-vCPU machine: quick 102 s / 106 s, levers' extra 107 s / 132 s (guidance 97 s / 121 s:
    # every guided image costs 2 network evaluations per step; filter 10 s), i.e. 2.05–2.24×
    "levers": {"name": "levers",
               "grid": {"filters": [0.8], "guidance": [1.0, 2.0, 4.0]}},
    "mnist": {
        "name": "mnist",
        "data": {"source": "npz:../shared/data/mnist10k.npz"},
        # CPU-sized to finish in under an hour on 2 cores with 3 replicates (README): two base
        # sizes (9 generators, not 12), 38.4 kimg per generator, at most 200 synthetic/class
        # the test set is every image outside B(50) and R(100): ~850/class (was 100/class)
        "splits": {"base_per_class": [10, 50]},
        # the 36M-parameter 32px net trains at ~2 img/s on CPU; the 1.1M one fits a CPU run.
        # Conditional fidelity on B(20) (benchmarks/generator.py --study mnist): 0.700 at
        # 25.6 kimg, 0.844 at 51.2 kimg (float32), 0.802 at 38.4 kimg (bf16 autocast; judge
        # ceiling 0.898); 38.4 kimg is ~2.4 min per generator at 271 img/s on 2 cores
        "generator": {"preset": "32px-small", "train_kimg": 38.4},
        "sampling": {"steps": 25},  # as measured (the quick default's 16: digits only)
        "grid": {"real_add_per_class": [10, 25, 50, 100],
                 "syn_add_per_class": [25, 100, 200]},
        # CPU-sized: auto picked ResNet-18 (~90 img/s here, ~20 min per 1,000-step cell); a
        # width-8 SmallCNN (28 → 14 → 7 → 4 px) ran ~800 img/s on a loaded 2-core machine.
        # On a GPU, --set classifier.arch=resnet18 --set classifier.train_steps=1000
        "classifier": {"arch": "smallcnn", "width": 8, "train_steps": 200},
    },
    "pneumonia": {
        "name": "pneumonia",
        "data": {"source": "medmnist:pneumoniamnist"},
        "splits": {"base_per_class": [25, 50, 100]},
        # B(25) fidelity 0.990 at the default 25.6 kimg (judge ceiling 0.845 on real test
        # images; benchmarks/generator.py --study pneumonia --set data.root=DIR)
        "generator": {"preset": "32px-small"},
        "sampling": {"steps": 25},  # as mnist
        # 2 seeds per replicate (was 3: the replicate is the unit of every interval, seeds
        # only average within it), so that the 3-replicate grid fits an hour on 2 cores
        "grid": {"real_add_per_class": [25, 50, 100, 200],
                 "syn_add_per_class": [50, 200, 800]},
        "classifier": {"arch": "smallcnn", "width": 8, "train_steps": 200},  # as mnist
    },
    # GPU-sized: the paper's CIFAR-10 setting, shrunk toward a one-GPU-day grid. Projected on
    # one H200 (benchmarks/throughput.py): 3.67 h with classifier.arch=airbench; this ResNet-18's
    # cells ran ~8× slower than airbench's on an H100 (README "Running at scale")
    "cifar10": {
        "name": "cifar10",
        "device": "cuda",
        # torch.compile of the generator: on an H200 training 3,541 vs 2,642 img/s eager and
        # sampling 733 vs 247 img/s (benchmarks/throughput.py --set compile=true); compiling
        # takes about a minute per generator, against ~2.4 h of generator training
        "compile": True,
        "data": {"source": "cifar10"},
        "splits": {"base_per_class": [100, 250, 500, 1000]},
        # DDPM-CIFAR-like 36M net: lr and EMA as in DDPM/EDM, not the digits defaults
        "generator": {"train_kimg": 2000.0, "batch_size": 256, "lr": 2e-4, "warmup_kimg": 200.0,
                      "ema_halflife_kimg": 500.0, "xflip": True},
        "sampling": {"steps": 25},  # as measured (throughput.py; the quick default is 16)
        "ray": {"gpus_per_task": 0.25, "gpus_per_generator": 1.0, "cpus_per_task": 2.0},
        "grid": {"real_add_per_class": [100, 250, 500, 1000],
                 "syn_add_per_class": [500, 1000, 2500, 5000]},
        # equal optimizer steps in every cell (arms at equal compute; the paper's 100-epochs
        # budget gives a +5,000 synthetic cell ~5× the steps of a +1,000 real one): 4,000
        # steps × 128 is the old epochs grid's mean compute per cell
        "classifier": {"hflip": True, "budget": "steps", "train_steps": 4000},
    },
    "bloodmnist": {
        "name": "bloodmnist",
        "device": "cuda",
        "compile": True,  # the cifar10 preset's net: as measured there
        "data": {"source": "medmnist:bloodmnist"},
        "splits": {"base_per_class": [50, 100, 200]},
        "generator": {"train_kimg": 1000.0, "batch_size": 256, "lr": 2e-4, "warmup_kimg": 100.0,
                      "ema_halflife_kimg": 250.0, "xflip": True},
        "sampling": {"steps": 25},  # as cifar10
        "ray": {"gpus_per_task": 0.25, "gpus_per_generator": 1.0, "cpus_per_task": 2.0},
        "grid": {"real_add_per_class": [50, 100, 200, 400],
                 "syn_add_per_class": [200, 800, 3200]},
        "classifier": {"hflip": True, "budget": "steps", "train_steps": 3000},  # as cifar10
    },
}
