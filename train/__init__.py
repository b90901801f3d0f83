"""Stage 1 of cloudcover: data (download, synthetic scenes, labelling) and Keras classifiers."""
