#!/usr/bin/env bash
# Regenerates the reference images of the plot rendering tests (Tests/MergeKitTests/Plots/
# PlotRenderingTests.swift): the sample sweep chart (sweep.png) and 4 × 4 heat map (heatmap.png)
# of Tests/MergeKitTests/Plots/PlotSamples.swift, written by the library's PlotFile.write, which
# renders them with rsvg-convert. Records which rsvg-convert made them in rsvg-convert-version.txt.
#
# Run from anywhere: Fixtures/plots/make_references.sh. Needs rsvg-convert (Debian/Ubuntu:
# apt-get install librsvg2-bin) and the fonts fontconfig picks for "sans-serif" (DejaVu Sans on
# Debian). Look at the images before committing them.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v rsvg-convert >/dev/null || { echo "rsvg-convert is missing: apt-get install librsvg2-bin" >&2; exit 1; }
out="$(pwd)/Fixtures/plots"
MERGEKIT_PLOT_REFERENCES="$out" swift test --filter PlotRenderingTests
version="$(rsvg-convert --version)"
font="$(fc-match sans-serif 2>/dev/null || echo unknown)"
printf '%s; sans-serif: %s\n' "$version" "$font" > "$out/rsvg-convert-version.txt"
echo "wrote $out/sweep.png ($(wc -c < "$out/sweep.png") bytes) and $out/heatmap.png ($(wc -c < "$out/heatmap.png") bytes) with $version"
