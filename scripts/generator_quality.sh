#!/bin/sh
# How recognisable the built-in generator's digits and clothes are: a classifier trained on real
# images of the benchmark (handwritten digits `hand`, Fashion-MNIST `fashion`) labels images the
# generator made from prompts naming each class; its top-1 on them is the share drawn as asked.
# The numbers are in docs/GENERATE.md ("Built-in generator").
#
#   sh scripts/generator_quality.sh [OUT_DIR] [--model GENERATOR]     (about 15 minutes on 2 cores)
set -e
out=${1:-runs/generator-quality}
shift 2>/dev/null || true
tailor=build/tailor
mkdir -p "$out"
for domain in hand fashion; do
    if [ ! -f "$out/$domain-classifier/best.safetensors" ]; then
        $tailor train --data bench:$domain --model wrn-16-2 --bn-momentum 0.1 --epochs 3 --seed 0 \
            --out "$out/$domain-classifier"
    fi
done
$tailor prompts --classes bench:hand --grammar world --domain handwritten-style --per-class 10 --seed 1 \
    --out "$out/hand-prompts.tsv"
$tailor prompts --classes bench:fashion --grammar world-clothing --domain "on a black background" --per-class 10 --seed 1 \
    --out "$out/fashion-prompts.tsv"
for domain in hand fashion; do
    $tailor generate "$@" --prompts "$out/$domain-prompts.tsv" --images-per-prompt 2 --seed 100 --out "$out/$domain-generated"
    $tailor eval --run "$out/$domain-classifier" --data "$out/$domain-generated" --confusion "$out/$domain-confusion.png" \
        | tee "$out/$domain-eval.txt"
done
