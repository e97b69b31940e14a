#!/bin/sh
# How well the built-in generator (or --model GENERATOR) draws what it is asked for: judges trained
# on the world corpus's own digit and clothing images (so they know the generator's style) label
# images generated from `tailor prompts`; their top-1 on them is the share drawn as asked. The
# numbers are in docs/GENERATE.md ("The built-in generator"). About 10 minutes on 2 cores.
#
#   sh scripts/generator_quality.sh [OUT_DIR] [tailor generate flags, e.g. --model runs/gen/generator]
set -e
out=${1:-runs/generator-quality}
[ $# -gt 0 ] && shift
tailor=build/tailor
world=data/benchmark/world/images
mkdir -p "$out/world-digits" "$out/world-clothing"
for d in 0 1 2 3 4 5 6 7 8 9; do ln -sfn "$PWD/$world/0$d-digit-$d" "$out/world-digits/$d"; done
i=62
for c in 0-tshirt 1-trouser 2-pullover 3-dress 4-coat 5-sandal 6-shirt 7-sneaker 8-bag 9-ankle-boot; do
    ln -sfn "$(ls -d "$PWD/$world/$i"-fashion-*)" "$out/world-clothing/$c"
    i=$((i + 1))
done
for kind in digits clothing; do
    [ -f "$out/world-$kind-classifier/best.safetensors" ] ||
        $tailor train --data "$out/world-$kind" --val "$out/world-$kind" --model wrn-10-1 --bn-momentum 0.1 --epochs 6 \
            --batch-size 64 --lr 0.05 --augment none --seed 0 --out "$out/world-$kind-classifier"
done
$tailor prompts --classes bench:hand --grammar world --domain handwritten-style --per-class 5 --seed 1 \
    --out "$out/digits-prompts.tsv"
$tailor prompts --classes bench:fashion --grammar world-clothing --domain "on a black background" --per-class 5 --seed 1 \
    --out "$out/clothing-prompts.tsv"
for kind in digits clothing; do
    $tailor generate "$@" --prompts "$out/$kind-prompts.tsv" --images-per-prompt 2 --seed 100 --out "$out/$kind-generated"
    $tailor eval --run "$out/world-$kind-classifier" --data "$out/$kind-generated" | tee "$out/$kind-eval.txt"
done
