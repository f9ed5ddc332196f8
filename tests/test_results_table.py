"""The results tables: each bar is checked against the metrics it names, and README's table is the committed file's."""
import json

from muomni import pipeline as P


def test_every_bar_check_belongs_to_a_row():
    rows = {what for _, what, _, _ in P.RESULT_ROWS}
    assert set(P.BAR_CHECKS) <= rows, set(P.BAR_CHECKS) - rows        # a renamed row must not drop its check silently
    reported = {what for _, what, bar, _ in P.RESULT_ROWS if bar == "reported"}
    assert not reported & set(P.BAR_CHECKS)


def test_met_says_yes_no_or_nothing():
    row = "CER / WER, voice families and sentences never trained on"
    assert P._met(row, dict(cer=0.09, wer=0.2, train_time_s=800)) == "yes"
    assert P._met(row, dict(cer=0.11, wer=0.2, train_time_s=800)) == "**no**"
    assert P._met(row, dict(cer=0.09, wer=0.2, train_time_s=1000)) == "**no**"     # the time is part of the bar
    assert P._met(row, dict(cer=0.09)) == ""                                        # not measured: no verdict
    assert P._met("CER / WER, a whole accent never trained on", dict(cer_accent=0.5, wer_accent=0.9)) == ""
    floor = "round-trip CER, Talker -> Stage B on test sentences / the same judge on espeak's audio"
    assert P._met(floor, dict(roundtrip_cer=0.06, espeak_cer=0.04)) == "yes"
    assert P._met(floor, dict(roundtrip_cer=0.07, espeak_cer=0.04)) == "**no**"


def test_reference_table_reads_the_file(tmp_path):
    metrics = dict(val_nats_per_char=1.5, val_perplexity=80.0, train_time_s=100.0)
    ref = dict(preset="laptop", stages=dict(A=dict(wall_time_s=120.0, metrics=dict(thinker=metrics), date="2026-01-01",
                                                    machine="2 CPU cores", commit="abc", run="r1")), total_wall_time_s=120.0)
    path = tmp_path / "laptop.json"
    path.write_text(json.dumps(ref))
    table = P.reference_table("laptop", path)
    assert "| A | nats per character" in table and "1.500 (80.0) in 100 s | **no** |" in table
    assert "2.0 min of wall time" in table and "(met)" in table


def test_cpu_description_names_the_chip_and_its_bf16_units(tmp_path):
    import os
    info = tmp_path / "cpuinfo"
    core = "processor\t: {}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
    info.write_text(core.format(0) + core.format(1))
    assert P.cpu_description(info) == f"{os.cpu_count()} CPU cores, Intel(R) Xeon(R) Platinum 8480+ with AMX bf16 units"
    info.write_text(core.format(0).replace(" amx_bf16 amx_tile", ""))
    assert P.cpu_description(info).endswith("Platinum 8480+ with AVX-512 bf16 units")
    no_file = P.cpu_description(tmp_path / "missing")              # not Linux: the architecture's name, no crash
    assert no_file.startswith(f"{os.cpu_count()} CPU cores, ") and no_file.endswith("bf16 units")
