from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.dimensionality_reduction.nodes import export_pca_csv, fit_pca, plot_scree


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                fit_pca,
                ["image_features", "params:dimensionality_reduction"],
                ["image_features_pca", "pca_explained_variance"],
                name="fit_pca",
            ),
            Node(export_pca_csv, "image_features_pca", "image_features_pca_csv", name="export_pca_csv"),
            Node(plot_scree, "pca_explained_variance", "pca_scree_plot", name="plot_scree"),
        ]
    )
