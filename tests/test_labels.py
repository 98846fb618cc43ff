"""Label tables: Cityscapes from cityscapesscripts, CamVid void, user folders."""

import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels

from scl_tf.data import labels


def test_cityscapes_label_ids_map_to_the_19_train_ids():
    spec = labels.cityscapes("labelIds")
    assert spec.num_classes == 19
    assert spec.class_names[0] == "road" and spec.class_names[-1] == "bicycle"
    for lab in cs_labels:
        if lab.id < 0:
            continue
        expected = lab.trainId if 0 <= lab.trainId < 255 else 255
        assert spec.value_to_train_id[lab.id] == expected, lab.name
    assert (spec.value_to_train_id[34:] == labels.UNDEFINED).all()
    assert spec.train_id_to_value.tolist() == [
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    ]
    assert spec.palette[0].tolist() == [128, 64, 128]


def test_cityscapes_train_ids_format():
    spec = labels.cityscapes("trainIds")
    assert spec.defined_values().tolist() == list(range(19)) + [255]
    assert spec.value_to_train_id[255] == 255


def test_cityscapes_unknown_format_names_the_flag():
    with pytest.raises(ValueError, match="--cityscapes_label_format"):
        labels.cityscapes("colors")


def test_camvid_void_is_ignored_and_nothing_else_defined():
    spec = labels.camvid()
    assert spec.num_classes == 11
    assert spec.value_to_train_id[:11].tolist() == list(range(11))
    assert spec.value_to_train_id[11] == 255
    assert (spec.value_to_train_id[12:] == labels.UNDEFINED).all()
    assert spec.palette.shape == (11, 3)


def test_folder_mapping_and_palette():
    spec = labels.folder(
        3, ignore_value=0, id_mapping={10: 0, 20: 1, 30: 2}, class_names=("a", "b", "c")
    )
    assert spec.value_to_train_id[[0, 10, 20, 30]].tolist() == [255, 0, 1, 2]
    assert spec.value_to_train_id[1] == labels.UNDEFINED
    assert len({tuple(color) for color in labels.default_palette(256)}) == 256


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"num_classes": 0}, "--num_classes"),
        ({"num_classes": 2, "id_mapping": {1: 5}}, "--id_mapping"),
        ({"num_classes": 2, "id_mapping": {300: 0}}, "--id_mapping"),
        ({"num_classes": 2, "class_names": ("a",)}, "--class_names"),
    ],
)
def test_folder_bad_arguments_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        labels.folder(**kwargs)
