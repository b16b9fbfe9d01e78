"""The input: ILSVRC-2012's files and class index, §2's preparation, the loader, and
§4.1's augmentation on the device."""
