"""Class folders and their labels: one label per folder, never two folders merged silently."""

import pytest

from fruits_kedro.labels import LabelError, check_class_folders, normalize_label


@pytest.mark.parametrize(
    ("first", "second", "label"),
    [
        ("Training/ Apple ", "Training/Apple", "Apple"),
        ("Training/Apple Red", "Training/Apple_Red", "Apple_Red"),
        ("Test/Apple\tRed", "Training/Apple Red", "Apple_Red"),  # across splits too
    ],
)
def test_two_folders_that_give_one_label_are_named_together(first, second, label):
    paths = [f"{first}/a.jpg", f"{second}/b.jpg", "Training/Kiwi/k.jpg"]
    with pytest.raises(LabelError) as caught:
        check_class_folders(paths)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{first!r} and {second!r}" in message or f"{second!r} and {first!r}" in message
    assert f"the label {label!r}" in message


def test_a_folder_of_spaces_only_gives_no_label():
    assert normalize_label("   ") == ""
    with pytest.raises(LabelError, match=r"^Class folder 'Training/   ' gives an empty label"):
        check_class_folders(["Training/   /a.jpg", "Training/Kiwi/k.jpg"])


def test_one_folder_name_in_several_splits_is_one_class():
    check_class_folders(["Training/Apple Red/a.jpg", "Test/Apple Red/b.jpg", "Apple Red/c.jpg"])


def test_files_outside_the_layout_give_no_label():
    # Nested deeper than <Split>/<Class>/, or directly under the root: skipped, not labelled.
    check_class_folders(["Training/Apple/a.jpg", "Training/Kiwi/ Apple /x.jpg", "Apple_.jpg"])


def test_folders_left_out_beside_the_split_folders_give_no_label():
    paths = ["Training/Apple Red/a.jpg", "Apple_Red/b.jpg"]
    with pytest.raises(LabelError):
        check_class_folders(paths)
    check_class_folders(paths, unsplit_excluded=True)
