from fruits_kedro.pipelines.preprocessing.nodes import export_rejected_csv
from fruits_kedro.pipelines.preprocessing.pipeline import create_pipeline


def test_the_rejected_images_are_handed_on_unchanged_to_be_saved_as_csv():
    table = object()  # the node never looks inside: the same table, saved in another format
    assert export_rejected_csv(table) is table
    [node] = create_pipeline().nodes
    assert (node.name, node.inputs, node.outputs) == (
        "export_rejected_csv",
        ["rejected_images"],
        ["rejected_images_csv"],
    )
