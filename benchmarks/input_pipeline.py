"""Input pipeline throughput: ImageNet training and evaluation preprocessing, images/s per core.

Writes ImageNet-like JPEGs (500x375 by default) into temporary TFRecord shards (or reads
real shards from --data_dir), runs build_dataset("imagenet_tfrecord", ...) with tf.data on
--threads threads, and reports the median images/s over --runs runs, in total and per
host core. Compare with the model's images/s per step (e.g. with --dataset=synthetic in
the trainer) to see whether the input or the model limits training.

    python benchmarks/input_pipeline.py --threads=8 --num_images=400 --runs=5
"""

import statistics
import tempfile

from absl import app, flags, logging

from irevnet_tf import data
from irevnet_tf.data import throughput

FLAGS = flags.FLAGS
flags.DEFINE_integer("threads", None, "tf.data threads (private pool); default: one per core.")
flags.DEFINE_integer("num_images", 400, "Synthetic JPEGs to write (ignored with --data_dir).")
flags.DEFINE_integer("image_width", 500, "Width of the synthetic JPEGs.")
flags.DEFINE_integer("image_height", 375, "Height of the synthetic JPEGs.")
flags.DEFINE_integer("num_shards", 8, "TFRecord files the synthetic JPEGs are spread over.")
flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of the synthetic images.")
flags.DEFINE_string("data_dir", None, "Existing imagenet_tfrecord shards to read instead.")
flags.DEFINE_integer("image_size", 224, "Output resolution.")
flags.DEFINE_integer("batch_size", 128, "Images per batch.")
flags.DEFINE_integer("batches_per_run", 10, "Batches timed per run.")
flags.DEFINE_integer("runs", 5, "Timed runs; the median is reported.")
flags.DEFINE_multi_enum("mode", ["train", "eval"], ["train", "eval"], "Pipelines to measure.")
flags.DEFINE_bool("deterministic", False, "Measure the deterministic (reproducible) pipeline.")


def measure(data_dir, mode, threads):
    """Median images/s and all runs' rates of one pipeline."""
    dataset = data.build_dataset(
        "imagenet_tfrecord", "train" if mode == "train" else "validation",
        global_batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
        is_training=mode == "train", data_dir=data_dir, repeat=True, seed=0,
        deterministic=FLAGS.deterministic)
    rates = throughput.images_per_second(throughput.with_threads(dataset, threads),
                                         FLAGS.batch_size, FLAGS.batches_per_run, FLAGS.runs)
    return statistics.median(rates), rates


def main(argv):
    del argv
    cores = throughput.host_cores()
    threads = FLAGS.threads or cores
    with tempfile.TemporaryDirectory(prefix="input_pipeline_") as temporary:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = temporary
            sizes = throughput.write_synthetic_imagenet(
                data_dir, FLAGS.num_images, FLAGS.image_height, FLAGS.image_width,
                FLAGS.num_shards, quality=FLAGS.jpeg_quality)
            logging.info("Wrote %d JPEGs of %dx%d (mean %.0f kB) in %d shards.", len(sizes),
                         FLAGS.image_width, FLAGS.image_height, sum(sizes) / len(sizes) / 1e3,
                         FLAGS.num_shards)
        print(f"threads={threads} host_cores={cores} batch={FLAGS.batch_size} "
              f"image_size={FLAGS.image_size} deterministic={FLAGS.deterministic}")
        for mode in FLAGS.mode:
            median, rates = measure(data_dir, mode, threads)
            per_core = median / min(threads, cores)
            print(f"{mode:5s}: {median:8.1f} images/s  ({per_core:7.1f} images/s per core; "
                  f"runs: {', '.join(f'{rate:.0f}' for rate in rates)})")


if __name__ == "__main__":
    app.run(main)
