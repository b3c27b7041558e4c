"""Machine-learning building blocks on Spark that more than one pipeline uses."""
