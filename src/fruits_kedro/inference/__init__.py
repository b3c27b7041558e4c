"""Running the CNN backbones: which networks there are, their weights, ONNX export, the
Python workers' runtime, and the featurization of images in Spark tasks.

- :mod:`.registry`: the backbones (:class:`~.registry.Backbone`, ``BACKBONES``), cheap to import;
- :mod:`.weights`: loading the weights on the driver, and identifying them without Keras;
- :mod:`.model_cache`: where converted ONNX models are kept between runs;
- :mod:`.onnx_export`: the driver's conversion to ONNX, and what is broadcast;
- :mod:`.torch_export`: PyTorch backbones built from their packages, exported to ONNX;
- :mod:`.runtime`: what runs in the Python workers, one model per worker;
- :mod:`.featurize`: image files to feature vectors in Spark tasks, with the rejected images.

TensorFlow/Keras and PyTorch are imported lazily everywhere: importing these modules (as
``kedro viz`` does through the pipelines) must stay cheap and must not start anything.
"""
