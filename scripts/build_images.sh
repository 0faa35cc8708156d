#!/usr/bin/env bash
# Build, and optionally push, the gfm container images.
#
# Usage: scripts/build_images.sh [--push] [KIND...]
#   KIND is base, featurize, train or serve (default: all four).
#
# The images are named the way gfm.settings.image(kind) names them, so the
# compiled pipeline and the images agree:
#   GFM_IMAGE_REGISTRY  registry prefix (default: ghcr.io/gfm-project)
#   GFM_IMAGE_TAG       tag (default: the version in pyproject.toml)
#   DOCKER              the build tool (default: docker)
#   BUILD_ARGS          extra arguments for every build, for example
#                       "--build-arg CUDA=cu126 --platform linux/amd64"
#
# The build context is `git archive HEAD`: only committed files go into an
# image, never a local virtual environment or uncommitted edits.
set -euo pipefail

cd "$(dirname "$0")/.."
push=0
kinds=()
for arg in "$@"; do
    case "$arg" in
        --push) push=1 ;;
        base|featurize|train|serve) kinds+=("$arg") ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build_images: unknown argument '$arg'; expected --push or base, featurize, train, serve" >&2; exit 2 ;;
    esac
done
if [[ ${#kinds[@]} -eq 0 ]]; then
    kinds=(base featurize train serve)
fi

docker="${DOCKER:-docker}"
registry="${GFM_IMAGE_REGISTRY:-ghcr.io/gfm-project}"
registry="${registry%/}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
tag="${GFM_IMAGE_TAG:-$version}"
read -r -a extra_args <<< "${BUILD_ARGS:-}"

if ! git diff --quiet HEAD -- src components pipelines images pyproject.toml; then
    echo "build_images: warning: uncommitted changes are not part of the images" >&2
fi

for kind in "${kinds[@]}"; do
    image="$registry/gfm-$kind:$tag"
    echo "build_images: building $image from images/$kind/Dockerfile"
    start=$SECONDS
    git archive --format=tar HEAD \
        | "$docker" build "${extra_args[@]}" \
            --file "images/$kind/Dockerfile" \
            --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" \
            --label "org.opencontainers.image.version=$version" \
            --tag "$image" -
    echo "build_images: built $image in $((SECONDS - start)) s"
    if [[ $push -eq 1 ]]; then
        "$docker" push "$image"
        echo "build_images: pushed $image"
    fi
done
