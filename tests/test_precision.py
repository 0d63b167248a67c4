"""What a config's precision "auto" resolves to: bf16 only where the CPU computes it natively."""

import importlib
import json
from pathlib import Path

from rl_laof import precision

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo(tmp_path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_native_bf16_reads_the_cpu_flags_not_onednns_query(monkeypatch, tmp_path):
    """AVX-512 alone (oneDNN emulates bf16 there, ~5x slower than fp32) is fp32; AVX-512-BF16 or AMX is bf16."""
    read = precision.cpu_flags
    for flags, want in (("avx2 avx512f avx512bw", "fp32"), ("avx512f avx512_bf16", "bf16"),
                        ("avx512f amx_tile amx_bf16", "bf16"), ("avx2", "fp32")):
        path = _cpuinfo(tmp_path, flags)
        monkeypatch.setattr(precision, "cpu_flags", lambda path=path: read(path))
        precision.native_bf16.cache_clear()
        assert precision.native_bf16() == want, flags
    precision.native_bf16.cache_clear()


def test_cpu_flags_parses_cpuinfo_and_is_none_without_it(tmp_path):
    assert precision.cpu_flags(_cpuinfo(tmp_path, "avx512f avx512_bf16")) >= {"avx512f", "avx512_bf16", "sse2"}
    assert precision.cpu_flags(tmp_path / "missing") is None


def test_a_latent_quality_record_stands_whatever_precision_auto_resolved_to(monkeypatch):
    """A record trained in bf16 on one machine is the same run for a machine where "auto" means fp32."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    lq = importlib.import_module("bench_latent_quality")
    cfg = lq.lam_config("laof_rgb", 0, quick=False)
    saved = json.loads(json.dumps(cfg.resolved().to_dict()))
    for resolved in ("bf16", "fp32"):
        assert lq.same_config({"trained_config": {**saved, "precision": resolved}}, cfg)
    assert not lq.same_config({"trained_config": {**saved, "steps": saved["steps"] + 1}}, cfg)
