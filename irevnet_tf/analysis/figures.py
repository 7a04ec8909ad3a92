"""Labelled figures of the analyses, drawn with matplotlib (a dependency of the package).

The image grids of `image_grid` are exact (one PNG pixel per image pixel) and meant for
programs; the figures here are meant for people: every row and column is labelled, images
are enlarged, and a figure says in words what an amplified or derived row shows.

matplotlib earns its place: a line plot with titled axes and readable image panels would
otherwise need a hand-written plotting and text-layout layer. It is imported only when a
figure is drawn, with the non-interactive Agg canvas (no display needed).
"""

import io

import numpy as np

from irevnet_tf.analysis import image_grid, output_files

# Display size of one image cell, in inches at DPI: 32x32 digits become about 90x90 pixels.
CELL_INCHES = 0.9
DPI = 100


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path):
    """Writes `figure` as a PNG atomically; returns `path`."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return output_files.atomic_write_bytes(path, buffer.getvalue())


def show_image(axes, pixels, **options):
    """Draws `pixels` (H, W, 1 or 3; any real dtype, values in [0, 255]) on `axes` without
    ticks: grey images with a fixed 0-255 scale, so that brightness compares across cells."""
    pixels = np.asarray(pixels, np.float64)
    if pixels.shape[-1] == 1:
        image = axes.imshow(pixels[..., 0], cmap=options.get("cmap", "gray"),
                            vmin=options.get("vmin", 0.0), vmax=options.get("vmax", 255.0),
                            interpolation="nearest")
    else:
        image = axes.imshow(image_grid.to_uint8(pixels), interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    return image


def reconstruction_figure(path, originals, reconstructions, labels, max_abs_error,
                          amplification_factor, title=""):
    """`reconstructions.png`: originals, decode(encode(x)) and the difference, labelled.

    The difference row shows |decode(encode(x)) - x| on its own colour scale, with a colour
    bar in grey levels of the [0, 255] pixel range and a caption giving the amplification,
    so that rounding-level differences are not mistaken for real noise.
    """
    originals = np.asarray(originals, np.float64)
    reconstructions = np.asarray(reconstructions, np.float64)
    columns = len(originals)
    difference = np.abs(reconstructions - originals).max(axis=-1, keepdims=True)
    largest_shown = float(difference.max()) if difference.size else 0.0
    figure = _figure(1.9 + CELL_INCHES * columns + 1.0, 0.9 + CELL_INCHES * 3 + 0.9)
    grid = figure.add_gridspec(3, columns + 1, width_ratios=[1] * columns + [0.12],
                               left=1.9 / figure.get_figwidth(), right=0.93, top=0.83,
                               bottom=0.9 / figure.get_figheight(), wspace=0.06, hspace=0.08)
    row_names = ("original x", "decode(encode(x))",
                 f"|difference|\nx {amplification_factor:.3g}")
    difference_image = None
    for column in range(columns):
        for row, cells in enumerate((originals, reconstructions)):
            axes = figure.add_subplot(grid[row, column])
            show_image(axes, cells[column])
            if column == 0:
                axes.set_ylabel(row_names[row], rotation=0, ha="right", va="center")
            if row == 0:
                axes.set_title(f"class {labels[column]}", fontsize=9)
        axes = figure.add_subplot(grid[2, column])
        difference_image = show_image(axes, difference[column], cmap="magma", vmin=0.0,
                                      vmax=largest_shown or 1.0)
        if column == 0:
            axes.set_ylabel(row_names[2], rotation=0, ha="right", va="center")
    if difference_image is not None:
        bar = figure.colorbar(difference_image, cax=figure.add_subplot(grid[2, columns]))
        bar.set_label("grey levels", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        # Plain decimals (0.00015), not an offset exponent that collides with the title.
        bar.ax.yaxis.set_major_formatter(lambda value, _: f"{value:.2g}")
    figure.suptitle(title or "Reconstruction: decode(encode(x)) gives x back", fontsize=11)
    figure.text(
        0.5, 0.02,
        f"Bottom row: |decode(encode(x)) - x| amplified {amplification_factor:.3g} times, on "
        "its own colour scale (grey levels of 0-255).\n"
        f"The largest shown is {largest_shown:.2g} grey levels (over all images: "
        f"{max_abs_error:.2g}): the rounding of x onto the model's fixed-point grid (and "
        "float32 pixels), black at true scale.",
        ha="center", va="bottom", fontsize=8)
    return save_png(figure, path)


def interpolation_figure(path, representation_rows, pixel_rows, pair_labels, t, title="",
                         caption=""):
    """`interpolations.png`: two labelled panels side by side, one row per pair and one
    column per t: decode((1 - t) Phi(a) + t Phi(b)) on the left, (1 - t) a + t b on the
    right; `caption` (up to two lines) below them."""
    pairs, steps = len(representation_rows), len(t)
    panel_width = CELL_INCHES * steps
    caption_inches = 0.45 if caption else 0.0
    figure = _figure(1.1 + 2 * panel_width + 0.6 + 0.3,
                     1.3 + CELL_INCHES * pairs + 0.3 + caption_inches)
    height = figure.get_figheight()
    panels = (("Walk in the representation:  decode((1 - t) Phi(a) + t Phi(b))",
               representation_rows),
              ("Walk in pixels:  (1 - t) a + t b", pixel_rows))
    left_margin = 1.1 / figure.get_figwidth()
    gap = 0.6 / figure.get_figwidth()
    width = panel_width / figure.get_figwidth()
    for number, (panel_title, rows) in enumerate(panels):
        left = left_margin + number * (width + gap)
        grid = figure.add_gridspec(pairs, steps, left=left, right=left + width,
                                   top=1 - 1.0 / height,
                                   bottom=(0.3 + caption_inches) / height,
                                   wspace=0.05, hspace=0.08)
        for pair in range(pairs):
            for step in range(steps):
                axes = figure.add_subplot(grid[pair, step])
                show_image(axes, rows[pair][step])
                if pair == 0:
                    axes.set_title(f"t = {t[step]:.2f}", fontsize=8)
                if step == 0 and number == 0:
                    first, second = pair_labels[pair]
                    axes.set_ylabel(f"class {first}\nto {second}", rotation=0, ha="right",
                                    va="center", fontsize=9)
        figure.text(left + width / 2, 1 - 0.72 / height, panel_title, ha="center",
                    va="bottom", fontsize=10, weight="bold")
    if title:
        figure.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=9)
    if caption:
        figure.text(0.5, 0.08 / height, caption, ha="center", va="bottom", fontsize=7,
                    wrap=True)
    return save_png(figure, path)


def separation_figure(path, rows, majority_class_accuracy=None, title=""):
    """`separation.png`: the separation measures against depth, three titled panels."""
    from matplotlib.ticker import MaxNLocator

    indices = [row["index"] for row in rows]
    names = [row["name"] for row in rows]
    figure = _figure(13, 4.4)
    panels = figure.subplots(1, 3)
    linear = [row["linear_accuracy"] for row in rows]
    nearest = [row["nearest_neighbour_accuracy"] for row in rows]
    panels[0].plot(indices, linear, "o-", label="linear (ridge)")
    panels[0].plot(indices, nearest, "s-", label="1-nearest neighbour")
    # Scaled to the values (not 0-1), so that a rise of a few points is visible.
    low, high = min(linear + nearest), max(linear + nearest)
    margin = max(0.02, 0.15 * (high - low))
    panels[0].set_ylim(max(0.0, low - margin), min(1.0, high + margin) + 0.005)
    panels[0].yaxis.set_major_formatter(lambda value, _: f"{100 * value:.0f} %")
    panels[0].set_title("Held-out accuracy of simple classifiers")
    panels[0].set_ylabel("held-out accuracy")
    panels[0].legend(loc="lower right", fontsize=8)
    panels[1].plot(indices, [row["contraction_ratio"] for row in rows], "o-")
    panels[1].set_title("Class contraction (lower: tighter classes)")
    panels[1].set_ylabel("mean within-class / between-class distance")
    panels[1].ticklabel_format(axis="y", useOffset=False)
    panels[2].plot(indices, [row["pca_components_90"] for row in rows], "o-")
    panels[2].set_title("Dimensions used")
    panels[2].set_ylabel("principal components for 90 % of variance")
    panels[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    for panel in panels:
        panel.set_xticks(indices)
        panel.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        panel.set_xlabel("representation (stage_0: the input, rearranged)")
        panel.grid(alpha=0.3)
    caption = "Measured on the held-out examples; classifiers trained on the training part."
    if majority_class_accuracy is not None:
        caption += f" Always guessing the commonest class scores {majority_class_accuracy:.0%}."
    figure.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=8)
    figure.suptitle(title or "Separation by depth", fontsize=11)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return save_png(figure, path)
