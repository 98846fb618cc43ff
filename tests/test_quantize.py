"""Quantized deployment: calibration frames, the agreement bar, INT8 ONNX and TFLite exports of a
small model, running them, and what refuses to write a model."""

import dataclasses
import json
import os

import numpy as np
import onnx
import pytest
from commands import run_export_script

from scl_tf import runs
from scl_tf.config import CalibrationConfig, ConfigError, ExportConfig, TFLiteConfig
from scl_tf.eval import predictors
from scl_tf.export import (
    agreement,
    calibration,
    onnx_model,
    parity,
    quantize,
    runtime,
    serving,
    tflite,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO_ROOT, "data", "camvid_mini", "train")
VAL = os.path.join(REPO_ROOT, "data", "camvid_mini", "val")
FRAME = os.path.join(VAL, "0016E5_07977.png")
SIZE = (64, 96)  # a multiple of the small model's output stride 16
# The small model of write_small_run has random weights, whose logits are nearly tied
# everywhere: int8 keeps about 93% of its labels at this size, fewer than of a trained model
# (the CamVid study's keeps 97%), so the command-line tests judge it by a lower bar. A broken
# quantization agrees by chance only (1 in 11 classes).
SMALL_MODEL_BAR = 0.85


@pytest.fixture(scope="module")
def small_run(write_small_run, tmp_path_factory):
    """(model dir, its Keras model)."""
    model_dir = str(tmp_path_factory.mktemp("run") / "run")
    return model_dir, write_small_run(model_dir)


@pytest.fixture(scope="module")
def tf_model(small_run):
    return serving.load_source(small_run[0])


def keras_labels(model, images):
    return model(images).numpy().argmax(-1)


# --- calibration frames -------------------------------------------------------------------------


def test_spread_is_even_and_deterministic():
    files = [f"{index:02d}.png" for index in range(10)]
    assert calibration.spread(files, 4) == ["00.png", "02.png", "05.png", "07.png"]
    assert calibration.spread(files, 1) == ["00.png"]
    assert calibration.spread(files, 20) == files


def test_calibration_files_from_folder_and_glob():
    folder = calibration.calibration_files(TRAIN, 5)
    pattern = calibration.calibration_files(os.path.join(TRAIN, "0016E5_*.png"), 100)
    assert len(folder) == 5 and folder == sorted(folder)
    assert pattern and all(os.path.basename(path).startswith("0016E5_") for path in pattern)
    (frame,) = calibration.frames(folder[:1], SIZE)
    assert frame.shape == (1, *SIZE, 3) and frame.dtype == np.float32 and frame.max() <= 255


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda tmp: str(tmp / "missing"), "--calibration: no such folder: "),
        (lambda tmp: str(tmp), "--calibration: no PNG or JPEG images in "),
        (lambda tmp: str(tmp / "*.png"), "--calibration: no PNG or JPEG images match "),
    ],
)
def test_missing_or_empty_calibration_set_is_named(make, error, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError, match=error):
        calibration.calibration_files(make(tmp_path), 10)


def test_unreadable_calibration_frame_is_named(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=f"--calibration: {broken}: not a readable image"):
        list(calibration.frames([str(broken)], None))


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"int8": True}, "--calibration: required with --int8"),
        ({"calibration": TRAIN}, "--calibration: only used with --int8"),
        ({"int8": True, "fp16": True, "calibration": TRAIN}, "--int8 and --fp16"),
        ({"int8": True, "calibration": TRAIN, "parity_dir": ""}, "--parity_dir, --parity_frames"),
        ({"int8": True, "calibration": TRAIN, "parity_frames": 0}, "--parity_dir, --parity_frames"),
        ({"min_agreement": 0.0}, r"--min_agreement: must be in \(0, 1\]"),
        ({"min_agreement": 1.5}, r"--min_agreement: must be in \(0, 1\]"),
        ({"calibration_count": 0}, "--calibration_count: must be >= 1"),
    ],
)
def test_contradictory_export_flags_are_named(kwargs, error, tmp_path):
    quantization = {
        key: kwargs.pop(key)
        for key in ("calibration", "calibration_count", "min_agreement")
        if key in kwargs
    }
    with pytest.raises(ConfigError, match=error):
        ExportConfig(
            VAL,
            str(tmp_path / "m.onnx"),
            quantization=CalibrationConfig(**quantization),
            **kwargs,
        )


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"precision": "int4"}, "--precision: expected one of"),
        ({"precision": "int8"}, "--calibration: required with --precision=int8"),
        ({"input_size": (0, 96)}, "--input_size: must be a positive HxW"),
    ],
)
def test_bad_tflite_flags_are_named(kwargs, error, tmp_path):
    with pytest.raises(ConfigError, match=error):
        TFLiteConfig(VAL, str(tmp_path / "m.tflite"), **kwargs)


# --- the agreement bar --------------------------------------------------------------------------


def constant_predictor(labels_of):
    """A predictor whose labels are labels_of(images) and probabilities one-hot of them."""

    def predict(images):
        labels = labels_of(images)
        return np.eye(3, dtype=np.float32)[labels], labels

    return predict


def test_agreement_is_judged_on_frames_not_noise():
    reference = constant_predictor(lambda images: np.zeros(images.shape[:3], np.int64))
    # Real frames (values from the frame files) agree but for 2%; uniform noise not at all.
    flip_frames = np.zeros((1, *SIZE), np.int64)
    flipped = int(0.02 * flip_frames.size)
    flip_frames.flat[:flipped] = 1

    def quantized_labels(images):
        is_noise = images.shape[0] == 2  # parity_cases' random batch
        return np.ones(images.shape[:3], np.int64) if is_noise else flip_frames

    quantized = constant_predictor(quantized_labels)
    for bar, passed in ((0.97, True), (0.99, False)):
        report = agreement.check_agreement(reference, quantized, SIZE, [FRAME], bar, "X")
        assert report.passed is passed and report.argmax_agreement == 1 - flipped / flip_frames.size
        assert report.noise.argmax_agreement == 0.0
        assert f"[>= {100 * bar:.1f}% (--min_agreement): {'PASS' if passed else 'FAIL'}]" in (
            report.line()
        )


# --- ONNX int8, in process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_fp32(tf_model):
    from scl_tf.export import convert

    proto, report = convert.export_onnx(tf_model, parity.parity_cases(SIZE, []), input_size=SIZE)
    assert report.passed, report.line()
    return proto


def test_float_nodes_are_the_normalization_and_the_output_head(onnx_fp32):
    nodes = {node.name: node for node in onnx_fp32.graph.node}
    kept = quantize.float_nodes(onnx_fp32)
    op_types = [nodes[name].op_type for name in kept]
    assert "Conv" not in op_types
    assert {"Mul", "Add", "Resize", "ArgMax"} <= set(op_types), op_types
    first_conv = next(node for node in onnx_fp32.graph.node if node.op_type == "Conv")
    assert any(nodes[name].output[0] in first_conv.input for name in kept)  # right before it


def test_int8_onnx_follows_fp32_and_keeps_metadata(onnx_fp32):
    frames = calibration.frames(calibration.calibration_files(TRAIN, 4), SIZE)
    proto, report = quantize.export_int8(onnx_fp32, frames, [FRAME], 0.5)
    assert report.argmax_agreement >= SMALL_MODEL_BAR, report.line()
    op_types = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types
    assert any(init.data_type == onnx.TensorProto.INT8 for init in proto.graph.initializer)
    session = runs.onnx_session(proto.SerializeToString())
    assert [item.type for item in session.get_inputs()] == ["tensor(float)"]
    stored = runtime.model_info(session, "int8.onnx")
    assert stored == dataclasses.replace(onnx_model.read_info(onnx_fp32, "fp32"), precision="int8")


# --- TFLite, in process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_fp32(tf_model, tmp_path_factory):
    """(path of a fp32 .tflite at SIZE, its parity report)."""
    flatbuffer, report = tflite.export_tflite(tf_model, SIZE, "fp32", [])
    path = str(tmp_path_factory.mktemp("tflite") / "model.tflite")
    with open(path, "wb") as out:
        out.write(flatbuffer)
    return path, report


def test_tflite_fp32_matches_keras_and_carries_metadata(tflite_fp32, small_run, tf_model):
    path, report = tflite_fp32
    assert report.passed and report.max_probability_delta <= parity.MAX_PROBABILITY_DELTA
    with open(path, "rb") as source:
        info = tflite.read_info(source.read(), path)
    assert info == dataclasses.replace(
        tf_model.info, outputs=("labels", "logits"), precision="fp32", input_size=SIZE
    )
    predictor = predictors.load_predictor(path)
    assert predictor.kind == "tflite" and predictor.input_size == SIZE
    assert predictor.labels.class_names == info.class_names
    # Smaller images are padded to the fixed size; the result is cropped back.
    images = parity.random_images(2, (SIZE[0] - 10, SIZE[1] - 6), seed=4)
    padded = np.pad(images, ((0, 0), (0, 10), (0, 6), (0, 0)), mode="edge")
    expected = parity.softmax(small_run[1](padded).numpy())[:, : SIZE[0] - 10, : SIZE[1] - 6]
    np.testing.assert_allclose(predictor(images), expected, atol=1e-5)


def test_tflite_without_scl_tf_metadata_reads_none(tf_model):
    plain = tflite.convert(tflite.fixed_function(tf_model, SIZE), "fp32")
    assert tflite.read_info(plain, "plain.tflite") is None


def test_bound_runner_checks_the_input_shape(tflite_fp32):
    interpreter = runs.tflite_interpreter(tflite_fp32[0])
    with pytest.raises(ValueError, match="--size, --batch: the TFLite file takes 1 image"):
        tflite.bound_runner(interpreter, parity.random_images(1, (32, 32), seed=0))
    tflite.bound_runner(interpreter, parity.random_images(1, SIZE, seed=0))()


def test_missing_or_corrupt_tflite_file_is_named(tmp_path):
    with pytest.raises(runs.ModelError, match="--model: no such TFLite file: /no/model.tflite"):
        runs.tflite_interpreter("/no/model.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\0" * 64)
    with pytest.raises(runs.ModelError, match=f"{corrupt}: .* cannot load it"):
        predictors.load_predictor(str(corrupt))


def test_tflite_runtime_is_litert_where_installed():
    pytest.importorskip("ai_edge_litert")
    assert runs.tflite_runtime().startswith("LiteRT (ai-edge-litert ")


# --- command lines ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_cli(small_run, tmp_path_factory):
    """(path, completed process) of export/to_onnx.py --int8 on the small run."""
    output = str(tmp_path_factory.mktemp("int8") / "int8.onnx")
    result = run_export_script(
        "to_onnx.py",
        f"--source={small_run[0]}",
        f"--output={output}",
        "--input_size=64x96",
        "--int8",
        f"--calibration={TRAIN}",
        "--calibration_count=4",
        "--parity_frames=1",
        f"--min_agreement={SMALL_MODEL_BAR}",
    )
    return output, result


@pytest.mark.slow
def test_to_onnx_int8_cli_writes_a_model_that_predicts(int8_cli, small_run):
    output, result = int8_cli
    assert result.returncode == 0, result.stderr
    assert "argmax agreement int8 vs ONNX fp32 on 1 frame(s)" in result.stdout
    assert f"wrote {output}: mobilenetv2, int8, opset 17, 64x96" in result.stdout
    predictor = predictors.load_predictor(output)
    assert predictor.kind == "onnx" and predictor.labels.name == "camvid"
    (frame,) = calibration.frames([FRAME], SIZE)
    labels = predictor(frame).argmax(-1)
    assert (labels == keras_labels(small_run[1], frame)).mean() >= SMALL_MODEL_BAR


@pytest.mark.slow
def test_tflite_cli_fp32_and_int8(small_run, tmp_path):
    model_dir, model = small_run
    outputs = {precision: str(tmp_path / f"{precision}.tflite") for precision in ("fp32", "int8")}
    common = (f"--source={model_dir}", "--input_size=64x96", "--parity_frames=1")
    fp32 = run_export_script("to_tflite.py", *common, f"--output={outputs['fp32']}")
    int8 = run_export_script(
        "to_tflite.py",
        *common,
        f"--output={outputs['int8']}",
        "--precision=int8",
        f"--calibration={TRAIN}",
        "--calibration_count=4",
        f"--min_agreement={SMALL_MODEL_BAR}",
    )
    for result in (fp32, int8):
        assert result.returncode == 0, result.stderr
    assert "[max |dprob| <= 1e-04: PASS]" in fp32.stdout
    assert "argmax agreement int8 vs TensorFlow fp32 on 1 frame(s)" in int8.stdout
    assert f"wrote {outputs['int8']}: mobilenetv2, int8, 64x96" in int8.stdout
    # Full-integer inside: no float convolution left; the float input and outputs stay.
    assert os.path.getsize(outputs["int8"]) < 0.4 * os.path.getsize(outputs["fp32"])
    (frame,) = calibration.frames([FRAME], SIZE)
    expected = parity.softmax(model(frame).numpy())
    for precision in ("fp32", "int8"):
        predictor = predictors.load_predictor(outputs[precision])
        with open(outputs[precision], "rb") as source:
            assert tflite.read_info(source.read(), outputs[precision]).precision == precision
        probabilities = predictor(frame)
        if precision == "fp32":
            np.testing.assert_allclose(probabilities, expected, atol=parity.MAX_PROBABILITY_DELTA)
        else:
            agreeing = (probabilities.argmax(-1) == expected.argmax(-1)).mean()
            assert agreeing >= SMALL_MODEL_BAR, agreeing


@pytest.mark.slow
@pytest.mark.parametrize("script", ["to_onnx.py", "to_tflite.py"])
def test_int8_below_the_bar_is_not_written(script, small_run, tmp_path):
    output = str(tmp_path / "model")
    int8 = ["--int8"] if script == "to_onnx.py" else ["--precision=int8"]
    result = run_export_script(
        script,
        f"--source={small_run[0]}",
        f"--output={output}",
        "--input_size=64x96",
        *int8,
        f"--calibration={TRAIN}",
        "--calibration_count=2",
        "--parity_frames=1",
        "--min_agreement=1.0",  # a random network's near-tied logits: int8 cannot be exact
    )
    assert result.returncode == 1
    assert "(--min_agreement): FAIL]" in result.stdout
    assert result.stderr.strip().splitlines()[-1].endswith(f"{output} not written")
    assert not os.path.exists(output)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, error",
    [
        (["--int8"], "error: --calibration: required with --int8"),
        (
            ["--int8", "--calibration=/no/frames"],
            "error: --calibration: no such folder: /no/frames",
        ),
        (["--int8", "--calibration=EMPTY"], "error: --calibration: no PNG or JPEG images in"),
        (["--int8", "--fp16", f"--calibration={TRAIN}"], "error: --int8 and --fp16"),
    ],
)
def test_to_onnx_int8_bad_calibration_is_one_line(args, error, small_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    output = str(tmp_path / "model.onnx")
    args = [arg.replace("EMPTY", str(empty)) for arg in args]
    result = run_export_script(
        "to_onnx.py", f"--source={small_run[0]}", f"--output={output}", *args
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(error), result.stderr
    assert not os.path.exists(output)


@pytest.mark.slow
def test_benchmark_times_int8_and_tflite_beside_fp32(onnx_fp32, int8_cli, tflite_fp32, tmp_path):
    fp32 = str(tmp_path / "fp32.onnx")
    onnx.save(onnx_fp32, fp32)
    int8, tflite_path = int8_cli[0], tflite_fp32[0]
    output = str(tmp_path / "bench.json")
    result = run_export_script(
        "benchmark.py",
        f"--model={fp32}",
        f"--models={int8},{tflite_path}",
        "--size=64x96",
        "--iters=3",
        "--warmup=1",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr
    with open(output) as source:
        (record,) = json.load(source)
    assert record["precision"] == "fp32"
    others = {os.path.basename(item["model"]): item for item in record["models"]}
    assert others["int8.onnx"]["precision"] == "int8" and others["int8.onnx"]["iters"] == 3
    assert others["model.tflite"]["runs"].startswith(runs.tflite_runtime())
    assert all(item["ratio_to_model"] > 0 for item in others.values())
    bad = run_export_script(
        "benchmark.py", f"--model={fp32}", f"--models={fp32}.txt", "--size=64x96"
    )
    assert bad.returncode == 1 and "--models: " in bad.stderr and ".txt is neither" in bad.stderr
    fp16 = run_export_script("benchmark.py", f"--model={int8}", "--fp16", "--size=64x96")
    assert fp16.returncode == 1 and "error: --fp16: --model is an int8 model" in fp16.stderr
