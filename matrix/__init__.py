"""matrix: a declarative experiment-matrix runner for vision-language-model alignment research."""
