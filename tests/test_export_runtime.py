"""The TensorFlow-free parts of scl_tf.export: providers, statistics, parity, metadata, images."""

import json

import numpy as np
import pytest

from scl_tf import runs
from scl_tf.data import labels as labels_lib
from scl_tf.export import bench, images, metadata, parity, runtime

ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


# --- providers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(provider="rocm"), "--provider: expected one of cpu, cuda, tensorrt, got 'rocm'"),
        (
            dict(provider="cuda", cudnn_conv_algo_search="FAST"),
            "--cudnn_conv_algo_search: expected one of EXHAUSTIVE, HEURISTIC, DEFAULT",
        ),
        (dict(provider="cuda", device_id=-1), "--device_id: must be >= 0"),
        (dict(provider="cuda", trt_fp16=True), "only with --provider=tensorrt, not cuda"),
        (dict(provider="cpu", trt_engine_cache="/tmp/c"), "only with --provider=tensorrt, not cpu"),
    ],
)
def test_bad_runtime_options_are_named(kwargs, error):
    with pytest.raises(ValueError, match=error):
        runtime.RuntimeOptions(**kwargs)


def test_cpu_provider():
    options = runtime.RuntimeOptions("cpu")
    assert runtime.execution_providers(options, ["CPUExecutionProvider"]) == [
        ("CPUExecutionProvider", {})
    ]
    assert options.device == "cpu"


def test_cuda_provider_options_then_cpu_fallback():
    options = runtime.RuntimeOptions("cuda", device_id=1, cudnn_conv_algo_search="HEURISTIC")
    assert runtime.execution_providers(options, ALL_PROVIDERS) == [
        ("CUDAExecutionProvider", {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC"}),
        ("CPUExecutionProvider", {}),
    ]
    assert options.device == "cuda"


def test_tensorrt_fp16_and_engine_cache_then_cuda_and_cpu():
    options = runtime.RuntimeOptions("tensorrt", trt_fp16=True, trt_engine_cache="/tmp/engines")
    providers = runtime.execution_providers(options, ALL_PROVIDERS)
    assert [name for name, _ in providers] == ALL_PROVIDERS
    assert providers[0][1] == {
        "device_id": "0",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": "/tmp/engines",
    }
    no_cache = runtime.execution_providers(runtime.RuntimeOptions("tensorrt"), ALL_PROVIDERS)
    assert no_cache[0][1]["trt_engine_cache_enable"] == "False"
    assert "trt_engine_cache_path" not in no_cache[0][1]


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_unavailable_provider_is_named(provider):
    with pytest.raises(
        runtime.ProviderError,
        match=f"--provider={provider}: this onnxruntime offers only CPUExecutionProvider",
    ):
        runtime.execution_providers(runtime.RuntimeOptions(provider), ["CPUExecutionProvider"])


def test_missing_onnx_file_is_named(tmp_path):
    with pytest.raises(runs.ModelError, match="--model: no such ONNX file: /no/model.onnx"):
        runs.onnx_session("/no/model.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(runs.ModelError, match=f"{corrupt}: ONNX Runtime cannot load it"):
        runs.onnx_session(str(corrupt))


# --- benchmark statistics -----------------------------------------------------------------------


def test_summarize_percentiles_and_throughput():
    stats = bench.summarize([i / 1000 for i in range(1, 101)], batch=4)
    assert stats.iters == 100 and stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.images_per_s == pytest.approx(4 / 0.0505)


def test_side_by_side_alternates_calls():
    calls = []
    times = bench.time_side_by_side(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, iters=3, warmup=2
    )
    assert calls == ["a", "b"] * 5
    assert [len(times[name]) for name in ("a", "b")] == [3, 3]
    assert bench.paired_ratio([2.0, 3.0, 9.0], [1.0, 1.0, 1.0]) == 3.0


@pytest.mark.parametrize(
    "counts, flag", [((0, 1, 0), "--batch"), ((1, 0, 0), "--iters"), ((1, 1, -1), "--warmup")]
)
def test_bad_counts_are_named(counts, flag):
    with pytest.raises(ValueError, match=flag):
        bench.check_counts(*counts)


def test_update_json_replaces_the_same_measurement(tmp_path):
    path = str(tmp_path / "sub" / "bench.json")
    record = {
        "model": "m.onnx",
        "provider": "cpu",
        "precision": "fp32",
        "batch": 1,
        "size": [8, 8],
        "value": 1,
    }
    bench.update_json(path, record)
    bench.update_json(path, {**record, "size": [16, 16]})
    bench.update_json(path, {**record, "value": 2})
    with open(path) as source:
        records = json.load(source)
    assert [(r["size"], r["value"]) for r in records] == [([16, 16], 1), ([8, 8], 2)]


# --- parity -------------------------------------------------------------------------------------


def test_softmax_matches_reference():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32) * 30
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(parity.softmax(logits), expected, rtol=1e-5, atol=1e-7)


def fake_predictor(probabilities, labels):
    return lambda images: (probabilities, labels)


@pytest.mark.parametrize(
    "precision, delta, flipped, passed",
    [
        ("fp32", 9e-5, 10, True),  # fp32 judges the probabilities only
        ("fp32", 2e-4, 0, False),
        ("fp16", 1e-2, 1, True),  # 1 of 1000 pixels: 99.9%
        ("fp16", 0.0, 2, False),
    ],
)
def test_parity_criteria(precision, delta, flipped, passed):
    probs = np.full((1, 10, 100, 2), 0.5, np.float32)
    labels = np.zeros((1, 10, 100), np.int64)
    other_labels = labels.copy()
    other_labels.flat[:flipped] = 1
    cases = [parity.ParityCase("zeros", np.zeros((1, 10, 100, 3), np.float32))]
    report = parity.check_parity(
        fake_predictor(probs, labels), fake_predictor(probs + delta, other_labels), cases, precision
    )
    assert report.passed is passed
    assert report.pixels == 1000 and report.argmax_agreement == 1 - flipped / 1000
    assert ("PASS" if passed else "FAIL") in report.line()


def test_parity_cases_dynamic_and_static(camvid_mini_dir):
    frame = str(camvid_mini_dir / "val" / "0016E5_07959.png")
    dynamic = parity.parity_cases(None, [frame])
    assert [case.images.shape for case in dynamic] == [
        (2, 192, 256, 3),
        (1, 97, 131, 3),
        (1, 360, 480, 3),
    ]
    static = parity.parity_cases((64, 96), [frame])
    assert [case.images.shape for case in static] == [(2, 64, 96, 3), (1, 64, 96, 3)]
    assert all(case.images.dtype == np.float32 and case.images.max() <= 255 for case in static)


def test_parity_frames(camvid_mini_dir, tmp_path):
    frames = parity.parity_frames(str(camvid_mini_dir / "val"), 2)
    assert len(frames) == 2 and frames == sorted(frames)
    assert parity.parity_frames("", 2) == [] and parity.parity_frames("x", 0) == []
    with pytest.raises(FileNotFoundError, match="--parity_dir: no such folder: /no/frames"):
        parity.parity_frames("/no/frames", 2)
    with pytest.raises(FileNotFoundError, match="--parity_dir: no PNG or JPEG images in"):
        parity.parity_frames(str(tmp_path), 2)


# --- metadata and images ------------------------------------------------------------------------


def test_onnx_props_round_trip():
    info = metadata.make_info(
        "camvid",
        "resnet50",
        8,
        labels_lib.CAMVID_CLASS_NAMES,
        "ema",
        outputs=("labels", "logits"),
        precision="fp16",
        input_size=(512, 1024),
    )
    props = metadata.to_onnx_props(info)
    assert all(isinstance(value, str) for value in props.values())
    assert metadata.from_onnx_props(props, "m.onnx") == info
    assert json.loads(props["class_names"])[0] == "sky"


def test_foreign_onnx_model_is_named():
    with pytest.raises(ValueError, match="other.onnx: no scl_tf metadata"):
        metadata.from_onnx_props({"producer": "x"}, "other.onnx")


def test_class_names_that_are_not_the_dataset_are_refused():
    with pytest.raises(ValueError, match="camvid: the model's 2 classes"):
        metadata.make_info("camvid", "resnet50", 8, ("a", "b"), "ema")


def test_class_shares():
    labels = np.array([[0, 1], [1, 1]])
    assert images.class_shares(labels, ("road", "sky")) == "sky 75%, road 25%"
    assert images.class_shares(labels, ("road", "sky", "car"), top=5) == "sky 75%, road 25%"


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        images.read_image(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.png: no such image"):
        images.read_image(str(tmp_path / "missing.png"))


@pytest.mark.parametrize("spinning", [True, False])
def test_sessions_spin_unless_told_not_to(tmp_path, spinning):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    session = runs.onnx_session(str(path), runtime.RuntimeOptions(spinning=spinning))
    options = session.get_session_options()
    if spinning:  # ORT's default: no entry
        with pytest.raises(RuntimeError, match="allow_spinning"):
            options.get_session_config_entry("session.intra_op.allow_spinning")
    else:
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.run(None, {"x": np.array([-1.0], np.float32)})[0].tolist() == [0.0]
