# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``--mixed_precision auto``: the resolver on known CPUs and GPUs, the per-script defaults, and
bts_test.py end to end (the policy it sets, the one start-up line, the depth it predicts)."""
import logging

import keras
import numpy as np
import pytest

import bts_main
import bts_model
import bts_test
import bts_trainer
from conftest import tiny_model_config, write_random_rgb
from tiny_run import TINY
from utils import precision
from utils.arguments import parse_args, train_config
from utils.configs import ConfigError

# The real reader (tests/conftest.py patches it in every test to report no bf16 features).
READ_CPUINFO = precision.read_cpuinfo

# /proc/cpuinfo "flags" lines. AMD EPYC: the development machine's (AVX2, no AVX-512). Sapphire
# Rapids (Xeon Platinum 8480+, AMX) and Cooper Lake (Xeon Platinum 8380H, AVX512-BF16, no AMX):
# the lines Linux prints for those CPUs, as they are commonly seen in cloud instances.
AMD_EPYC_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic "
    "movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy "
    "cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibpb vmmcall fsgsbase "
    "tsc_adjust bmi1 avx2 smep bmi2 rdseed adx smap clflushopt sha_ni xsaveopt xsavec xgetbv1 "
    "clzero xsaveerptr virt_ssbd arat")
SAPPHIRE_RAPIDS_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx "
    "fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts "
    "rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 "
    "monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic "
    "movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch "
    "cpuid_fault epb cat_l3 cat_l2 cdp_l3 invpcid_single intel_ppin cdp_l2 ssbd mba ibrs ibpb "
    "stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 "
    "smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
    "intel_pt avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc "
    "cqm_occup_llc cqm_mbm_total cqm_mbm_local split_lock_detect avx_vnni avx512_bf16 wbnoinvd "
    "dtherm ida arat pln pts hwp hwp_act_window hwp_epp hwp_pkg_req avx512vbmi umip pku ospke "
    "waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 "
    "rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear serialize tsxldtrk "
    "pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities")
COOPER_LAKE_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
    "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave "
    "avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch invpcid_single ssbd ibrs ibpb stibp "
    "ibrs_enhanced fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq "
    "rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves arat "
    "avx512_bf16 avx512_vnni md_clear arch_capabilities")
# A Sapphire Rapids VM whose hypervisor hides AMX (the flags of a development machine, 2026-12-07).
HIDDEN_AMX_FLAGS = " ".join(f for f in SAPPHIRE_RAPIDS_FLAGS.split() if not f.startswith("amx_"))
# AMD EPYC Genoa (Zen 4): AVX-512 with AVX512-BF16, no AMX (a development machine, 2026-12-04).
AMD_GENOA_FLAGS = AMD_EPYC_FLAGS + (
    " avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi "
    "avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq")
INTEL, AMD = "GenuineIntel", "AuthenticAMD"


def cpuinfo(flags: str, processors: int = 2, vendor: str = INTEL) -> str:
    """A /proc/cpuinfo text: ``processors`` entries with ``flags``, plus the ``vmx flags`` and
    ``bugs`` lines recent kernels print (which are not CPU features)."""
    entry = ("processor\t: {n}\nvendor_id\t: {vendor}\nmodel name\t: some CPU\n"
             "flags\t\t: {flags}\nvmx flags\t: vnmi preemption_timer amx_bf16_lookalike\n"
             "bugs\t\t: spectre_v1 spectre_v2\n\n")
    return "".join(entry.format(n=n, flags=flags, vendor=vendor) for n in range(processors))


INTEL_WITHOUT_AMX = ("none", "Intel CPU has AVX512-BF16 but no AMX: bf16 is slower than fp32 there")


# ---------------------------------------------------------------- the resolver (pure)
@pytest.mark.parametrize("flags, vendor, features, expected", [
    (SAPPHIRE_RAPIDS_FLAGS, INTEL, {"amx_bf16", "avx512_bf16"}, ("bf16", "CPU has AMX-BF16")),
    (COOPER_LAKE_FLAGS, INTEL, {"avx512_bf16"}, INTEL_WITHOUT_AMX),
    (HIDDEN_AMX_FLAGS, INTEL, {"avx512_bf16"}, INTEL_WITHOUT_AMX),  # measured: bf16 1.6x slower
    (AMD_GENOA_FLAGS, AMD, {"avx512_bf16"}, ("bf16", "CPU has AVX512-BF16")),  # measured: 1.55x faster
    (AMD_EPYC_FLAGS, AMD, set(), ("none", "CPU has no AMX/AVX512-BF16")),
])
def test_cpu_flags_and_vendor_decide_auto_on_a_cpu_only_machine(flags, vendor, features, expected):
    text = cpuinfo(flags, vendor=vendor)
    found = precision.cpu_bf16_features(text)
    assert found == features and precision.cpu_vendor(text) == vendor
    assert precision.resolve_precision("auto", cpu_flags=found, gpus=[],
                                       vendor=precision.cpu_vendor(text)) == expected


def test_cpu_vendor_reads_the_vendor_id_line_only():
    assert precision.cpu_vendor("") == ""  # macOS, Windows: no /proc/cpuinfo
    assert precision.cpu_vendor("processor\t: 0\nBogoMIPS\t: 50.00\nflags\t\t: fp asimd\n") == ""  # ARM
    assert precision.cpu_vendor("model name\t: GenuineIntel lookalike\nvendor_id\t: AuthenticAMD\n") == AMD
    # with no vendor known, AVX512-BF16 alone still picks bf16 (the measured AMD behaviour)
    assert precision.resolve_precision("auto", cpu_flags=frozenset({"avx512_bf16"})) == (
        "bf16", "CPU has AVX512-BF16")


def test_no_cpuinfo_means_no_bf16_features(tmp_path):
    assert READ_CPUINFO(str(tmp_path / "absent")) == ""  # macOS, Windows
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu avx2 amx_bf16\n")
    assert precision.cpu_bf16_features(READ_CPUINFO(str(tmp_path / "cpuinfo"))) == {"amx_bf16"}
    assert precision.cpu_bf16_features("") == frozenset()
    assert precision.resolve_precision("auto", cpu_flags=frozenset(), gpus=[]) == (
        "none", "CPU has no AMX/AVX512-BF16")
    # a feature named outside a flags line is no feature
    assert precision.cpu_bf16_features("model name\t: amx_bf16 avx512_bf16\n") == frozenset()


def test_oneDNN_switched_off_keeps_an_amx_cpu_in_float32():
    assert precision.onednn_disabled({"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert not precision.onednn_disabled({"TF_ENABLE_ONEDNN_OPTS": "1"})
    assert not precision.onednn_disabled({})
    amx = precision.cpu_bf16_features(cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    assert precision.resolve_precision("auto", cpu_flags=amx, onednn_off=True) == (
        "none", "CPU has AMX-BF16 but TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN off")


A100, T4, H100 = ("NVIDIA A100-SXM4-40GB", (8, 0)), ("Tesla T4", (7, 5)), ("NVIDIA H100", (9, 0))


@pytest.mark.parametrize("gpus, expected", [
    ([A100], ("bf16", "GPU compute capability 8.0+")),
    ([A100, H100], ("bf16", "GPU compute capability 8.0+")),
    ([T4], ("none", "GPU Tesla T4 has compute capability 7.5, below 8.0")),
    ([A100, T4], ("none", "GPU Tesla T4 has compute capability 7.5, below 8.0")),  # every GPU
    ([("Metal", None)], ("none", "GPU Metal reports no compute capability")),
])
def test_gpus_decide_auto_whatever_the_cpu(gpus, expected):
    amx = precision.cpu_bf16_features(cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    for cpu_flags in (frozenset(), amx):  # the model runs on the GPUs, not on the CPU
        assert precision.resolve_precision("auto", cpu_flags=cpu_flags, gpus=gpus) == expected


def test_a_tpu_gets_bf16_and_explicit_values_are_kept():
    assert precision.resolve_precision("auto", gpus=[T4], tpu=True) == ("bf16", "TPU")
    amx = precision.cpu_bf16_features(cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    for requested in ("none", "bf16", "fp16"):
        for machine in ({"cpu_flags": amx}, {"gpus": [A100]}, {"gpus": [T4]}, {"tpu": True}, {}):
            assert precision.resolve_precision(requested, **machine) == (requested, "requested")
    with pytest.raises(ValueError, match="'fp8' is not one of none, bf16, fp16, auto"):
        precision.resolve_precision("fp8")


def test_the_tf_side_lists_this_machines_gpus_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [T4])
    with caplog.at_level(logging.INFO, logger="bts.precision"):
        assert bts_trainer.resolve_mixed_precision("auto") == "none"
        assert bts_trainer.resolve_mixed_precision("bf16") == "bf16"  # explicit: not logged
    assert [r.getMessage() for r in caplog.records if r.name == "bts.precision"] == [
        "mixed precision: auto -> none (GPU Tesla T4 has compute capability 7.5, below 8.0)"]
    with pytest.raises(ValueError, match="'auto' has no dtype policy"):
        bts_trainer.set_precision_policy("auto")


# ---------------------------------------------------------------- defaults and configs
def test_auto_is_the_default_where_a_script_predicts_and_opt_in_for_training(monkeypatch, capsys):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)  # the mocked AMX CPU's default
    test_args = parse_args(groups=("model", "data", "eval", "test"), argv=[], test_datasets=True,
                           defaults={"mixed_precision": "auto"})
    assert test_args.mixed_precision == "auto"
    assert parse_args(groups=("model",), argv=[]).mixed_precision == "none"
    for parse, expected in ((lambda argv: bts_test.main(argv), "auto"),
                            (bts_main.parse_train_args, "none")):
        with pytest.raises(SystemExit):
            parse(["--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "auto: bf16 on a TPU" in shown and f"float32; docs/performance.md) (default: {expected})" in shown
    train = bts_main.parse_train_args(["--filenames_file", "x.txt", "--mixed_precision", "auto"])
    assert train.mixed_precision == "auto"  # accepted (opt-in) ...
    with pytest.raises(ConfigError, match="auto reached the training config unresolved"):
        train_config(train)  # ... and never built into a config unresolved
    monkeypatch.setattr(precision, "read_cpuinfo", lambda path=precision.CPUINFO_PATH: cpuinfo(
        SAPPHIRE_RAPIDS_FLAGS))
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    train.mixed_precision = bts_trainer.resolve_mixed_precision(
        train.mixed_precision, tpu=bts_trainer.uses_tpu(train.distribution_strategy, train.tpu_name))
    config = train_config(train)  # as bts_main.main builds it: the run folder records bf16
    assert config.mixed_precision == "bf16" and "--mixed_precision bf16\n" in config.argument_text
    assert bts_trainer.uses_tpu("auto", "my-tpu") and bts_trainer.uses_tpu("tpu", "")
    assert not bts_trainer.uses_tpu("auto", "") and not bts_trainer.uses_tpu("mirrored", "my-tpu")


# ---------------------------------------------------------------- bts_test.py end to end
@pytest.fixture(scope="module")
def tiny_keras_file(tmp_path_factory):
    """A tiny NYU model saved as .keras under float32 (as every shipped/converted file is)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(5)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    bts_model.build_bts_model(tiny_model_config("nyu")).save(path)
    return path


@pytest.fixture
def float32_afterwards():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _predict(tmp_path, model, name, *extra):
    photo = tmp_path / "photos" / "room.png"
    if not photo.exists():
        write_random_rgb(str(photo), 64, 80, seed=7)
    out = tmp_path / name
    assert bts_test.main(TINY + ["--dataset", "nyu", "--checkpoint_path", str(model), "--image_path",
                                 str(photo), "--output_directory", str(out), "--save_npy", *extra]) == 0
    return np.load(out / "npy" / "room.npy")


def _precision_lines(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "bts.precision" and r.getMessage().startswith("mixed precision")]


def test_bts_test_auto_on_a_cpu_without_bf16_is_float32(tmp_path, tiny_keras_file, monkeypatch, caplog,
                                                         float32_afterwards):
    monkeypatch.setattr(precision, "read_cpuinfo", lambda path=precision.CPUINFO_PATH: cpuinfo(AMD_EPYC_FLAGS))
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    with caplog.at_level(logging.INFO):
        auto = _predict(tmp_path, tiny_keras_file, "auto")  # the default
    assert _precision_lines(caplog) == ["mixed precision: auto -> none (CPU has no AMX/AVX512-BF16)"]
    assert keras.mixed_precision.global_policy().name == "float32"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        none = _predict(tmp_path, tiny_keras_file, "none", "--mixed_precision", "none")
    assert _precision_lines(caplog) == []
    np.testing.assert_array_equal(auto, none)


def test_bts_test_auto_on_an_amx_cpu_predicts_in_bf16(tmp_path, tiny_keras_file, monkeypatch, caplog,
                                                      float32_afterwards):
    fp32 = _predict(tmp_path, tiny_keras_file, "fp32", "--mixed_precision", "none")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)  # the mocked AMX CPU's default
    monkeypatch.setattr(precision, "read_cpuinfo",
                        lambda path=precision.CPUINFO_PATH: cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    with caplog.at_level(logging.INFO):
        bf16 = _predict(tmp_path, tiny_keras_file, "bf16")
    assert _precision_lines(caplog)[0] == "mixed precision: auto -> bf16 (CPU has AMX-BF16)"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    # The float32 .keras file was rebuilt under the policy (else its encoder stayed float32):
    # the depth moved, by bf16's rounding only (8 mantissa bits; random tiny weights, 10 m range).
    delta = np.abs(bf16.astype(np.float64) - fp32)
    assert 0 < delta.max() < 0.25 and delta.mean() < 0.05  # measured: 0.051 and 0.0088 m


def test_bts_test_auto_on_an_intel_cpu_without_amx_is_float32(tmp_path, tiny_keras_file, monkeypatch,
                                                             caplog, float32_afterwards):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)  # oneDNN on, Intel's default
    monkeypatch.setattr(precision, "read_cpuinfo",
                        lambda path=precision.CPUINFO_PATH: cpuinfo(HIDDEN_AMX_FLAGS))
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    with caplog.at_level(logging.INFO):
        auto = _predict(tmp_path, tiny_keras_file, "auto")  # the default
    assert _precision_lines(caplog) == [f"mixed precision: auto -> {INTEL_WITHOUT_AMX[0]} "
                                        f"({INTEL_WITHOUT_AMX[1]})"]
    assert keras.mixed_precision.global_policy().name == "float32"
    np.testing.assert_array_equal(auto, _predict(tmp_path, tiny_keras_file, "none",
                                                 "--mixed_precision", "none"))


def test_model_in_global_policy_rebuilds_a_float32_file_with_its_weights(tiny_keras_file,
                                                                         float32_afterwards):
    keras.mixed_precision.set_global_policy("float32")
    loaded = keras.saving.load_model(tiny_keras_file, compile=False)
    config = tiny_model_config("nyu")
    assert bts_trainer.model_in_global_policy(loaded, config) is loaded  # already float32
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    loaded = keras.saving.load_model(tiny_keras_file, compile=False)
    assert loaded.get_layer("encoder.conv0").dtype_policy.name == "float32"  # the file's record
    rebuilt = bts_trainer.model_in_global_policy(loaded, config)
    fresh = bts_model.build_bts_model(config)
    assert ({layer.name: layer.dtype_policy.name for layer in rebuilt.layers}
            == {layer.name: layer.dtype_policy.name for layer in fresh.layers})
    assert rebuilt.get_layer("encoder.conv0").dtype_policy.name == "mixed_bfloat16"
    assert bts_trainer.model_in_global_policy(rebuilt, config) is rebuilt
    for mine, theirs in zip(rebuilt.weights, loaded.weights):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
