// A checkpoint on disk: a frozen process's image and memory in a directory, restorable later
// on the same machine without any daemon (`ferry checkpoint` / `ferry restore`).
//
//   DIR/image.bin   the ProcessImage (Cap'n Proto, unpacked stream encoding)
//   DIR/pages.bin   the contents of every page the image marks present, in the image's order
//   DIR/carried.bin the contents of its carried files (pm/carried_files.h), one after the
//                   other in the image's order (absent when it has none)
//
// Writing goes to DIR/*.tmp first and renames at the end: a checkpoint directory either
// holds a complete checkpoint or none.
#pragma once

#include <capnp/serialize.h>

#include <filesystem>
#include <memory>

#include "dipc/status.h"
#include "pm/capture.h"
#include "pm/carried_files.h"
#include "pm/restore.h"

namespace ferry::pm {

struct CheckpointSummary {
  uint32_t vmas = 0, files = 0;
  uint64_t pages = 0, bytes = 0;
};

// Writes `image` and the frozen process's present pages into `dir` (created if missing; an
// existing checkpoint there is replaced only once the new one is complete).
Result<CheckpointSummary> write_checkpoint(const std::filesystem::path& dir, wire::ProcessImage::Reader image,
                                           FrozenProcess& process);

class Checkpoint {
 public:
  // Opens DIR; errors name the missing or damaged file.
  static Result<std::unique_ptr<Checkpoint>> open(const std::filesystem::path& dir);
  ~Checkpoint();

  wire::ProcessImage::Reader image() const { return image_; }
  // Feeds pages.bin to a restore; checks that its size matches the image.
  PageFeed pages() const;
  // The contents of its carried files (RestoreOptions::carried); checks their sizes.
  Result<CarriedContents> carried() const;

 private:
  Checkpoint() = default;
  std::filesystem::path dir_;
  int image_fd_ = -1;
  std::unique_ptr<capnp::StreamFdMessageReader> reader_;
  wire::ProcessImage::Reader image_;
};

}  // namespace ferry::pm
