from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.evaluation.nodes import (
    classify_feature_sets,
    export_classifier,
    featurize_with_backbones,
    images_for_orb,
    plot_accuracy_frontier,
    plot_confusion_matrices,
    plot_feature_projections,
    plot_feature_set_comparison,
    results_table,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluation nodes only; they read ``raw_images`` (ingestion) and the ORB outputs.

    The backbones are not read from ``params:backbone``: each variant of
    ``evaluation.feature_sets`` (backbone, runtime, input size) is tried, and one without weights is skipped.
    """
    return Pipeline(
        [
            Node(images_for_orb, ["raw_images", "params:evaluation"], "images_for_orb", name="images_for_orb"),
            Node(
                featurize_with_backbones,
                [
                    "raw_images",
                    "params:evaluation",
                    "params:preprocessing",
                    "params:feature_extraction",
                    "params:ingestion",
                ],
                ["evaluation_backbone_features", "evaluation_backbone_report"],
                name="featurize_with_backbones",
            ),
            Node(
                classify_feature_sets,
                [
                    "evaluation_backbone_features",
                    "evaluation_backbone_report",
                    "orb_histograms",
                    "orb_baseline_report",
                    "params:evaluation",
                    "params:dimensionality_reduction",
                ],
                ["evaluation_metrics", "evaluation_details", "classifier_model", "classifier_settings"],
                name="classify_feature_sets",
            ),
            Node(
                export_classifier,
                ["classifier_model", "classifier_settings"],
                "classifier_export",
                name="export_classifier",
            ),
            Node(results_table, "evaluation_metrics", "evaluation_results_table", name="results_table"),
            Node(
                plot_confusion_matrices,
                ["evaluation_details", "evaluation_metrics"],
                "evaluation_confusion_matrix_plot",
                name="plot_confusion_matrices",
            ),
            Node(
                plot_feature_set_comparison,
                "evaluation_metrics",
                "evaluation_comparison_plot",
                name="plot_feature_set_comparison",
            ),
            Node(
                plot_accuracy_frontier,
                "evaluation_metrics",
                "evaluation_frontier_plot",
                name="plot_accuracy_frontier",
            ),
            Node(
                plot_feature_projections,
                "evaluation_details",
                "evaluation_projection_plot",
                name="plot_feature_projections",
            ),
        ]
    )
