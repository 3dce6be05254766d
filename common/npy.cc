#include "common/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_buffer.h"

// Array data is copied to and from files byte for byte, and .npy float32
// files from NumPy are little-endian ('<f4').
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "npy.cc assumes a little-endian host");

namespace edge {
namespace {

// The format (numpy.lib.format): magic, major and minor version, header
// length (2 bytes in 1.0, 4 in 2.0, little-endian), then a Python dict
// literal padded with spaces and ending in '\n'.
constexpr std::string_view kMagic("\x93NUMPY", 6);
// NumPy pads the header so that the data starts at a multiple of 64 bytes.
constexpr size_t kHeaderAlignment = 64;

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  bool has_descr = false, has_fortran_order = false, has_shape = false;
  std::vector<int64_t> shape;
};

// A cursor over the header dict. Only the subset NumPy writes is accepted:
// quoted keys and strings, True/False, and a tuple of integers.
class DictReader {
 public:
  explicit DictReader(std::string_view text) : text_(text) {}

  bool Consume(char c) {
    SkipSpace();
    if (text_.empty() || text_.front() != c) return false;
    text_.remove_prefix(1);
    return true;
  }
  bool Quoted(std::string* out) {
    SkipSpace();
    if (text_.empty() || (text_[0] != '\'' && text_[0] != '"')) return false;
    const size_t end = text_.find(text_[0], 1);
    if (end == std::string_view::npos) return false;
    *out = std::string(text_.substr(1, end - 1));
    text_.remove_prefix(end + 1);
    return true;
  }
  bool Bool(bool* out) {
    SkipSpace();
    for (const bool value : {true, false}) {
      const std::string_view word = value ? "True" : "False";
      if (text_.substr(0, word.size()) == word) {
        text_.remove_prefix(word.size());
        *out = value;
        return true;
      }
    }
    return false;
  }
  bool Int(int64_t* out) {
    SkipSpace();
    size_t n = 0;
    int64_t value = 0;
    while (n < text_.size() && text_[n] >= '0' && text_[n] <= '9') {
      if (value > (std::numeric_limits<int64_t>::max() - 9) / 10) return false;
      value = value * 10 + (text_[n++] - '0');
    }
    if (n == 0) return false;
    text_.remove_prefix(n);
    *out = value;
    return true;
  }
  bool AtEnd() {
    SkipSpace();
    return text_.empty();
  }

 private:
  void SkipSpace() {
    while (!text_.empty() && (text_[0] == ' ' || text_[0] == '\n')) {
      text_.remove_prefix(1);
    }
  }
  std::string_view text_;
};

// `(d0, d1, ...)`, `(d0,)` or `()`.
bool ReadShape(DictReader* reader, std::vector<int64_t>* shape) {
  if (!reader->Consume('(')) return false;
  if (reader->Consume(')')) return true;
  for (;;) {
    int64_t dim = 0;
    if (!reader->Int(&dim)) return false;
    shape->push_back(dim);
    const bool comma = reader->Consume(',');
    if (reader->Consume(')')) return true;
    if (!comma) return false;
  }
}

// One `'key': value` pair into `header`; the message says what is wrong.
absl::Status ReadEntry(DictReader* reader, NpyHeader* header) {
  std::string key;
  if (!reader->Quoted(&key) || !reader->Consume(':')) {
    return absl::InvalidArgumentError("malformed header dict");
  }
  bool ok = false;
  if (key == "descr") {
    ok = reader->Quoted(&header->descr);
    header->has_descr = true;
  } else if (key == "fortran_order") {
    ok = reader->Bool(&header->fortran_order);
    header->has_fortran_order = true;
  } else if (key == "shape") {
    ok = ReadShape(reader, &header->shape);
    header->has_shape = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected header key '", key, "'"));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed value of header key '", key, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NpyHeader> ParseHeader(std::string_view text) {
  DictReader reader(text);
  NpyHeader header;
  if (!reader.Consume('{')) {
    return absl::InvalidArgumentError("header is not a dict");
  }
  if (!reader.Consume('}')) {
    for (;;) {
      absl::Status status = ReadEntry(&reader, &header);
      if (!status.ok()) return status;
      const bool comma = reader.Consume(',');
      if (reader.Consume('}')) break;
      if (!comma) return absl::InvalidArgumentError("malformed header dict");
    }
  }
  if (!reader.AtEnd()) {
    return absl::InvalidArgumentError("trailing text after the header dict");
  }
  if (!header.has_descr || !header.has_fortran_order || !header.has_shape) {
    return absl::InvalidArgumentError(
        "header lacks one of 'descr', 'fortran_order', 'shape'");
  }
  return header;
}

// Checks that the header describes what this reader supports and returns
// the element count.
absl::StatusOr<uint64_t> Float32Count(const NpyHeader& header) {
  if (header.descr != "<f4") {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype '", header.descr, "' is not little-endian float32 ('<f4')"));
  }
  if (header.fortran_order) {
    return absl::InvalidArgumentError(
        "Fortran-order arrays are not supported (C order only)");
  }
  // Bounded so that count * sizeof(float) cannot overflow.
  constexpr uint64_t kMaxCount = std::numeric_limits<uint64_t>::max() / 8;
  uint64_t count = 1;
  for (const int64_t dim : header.shape) {
    const uint64_t d = static_cast<uint64_t>(dim);
    if (d != 0 && count > kMaxCount / d) {
      return absl::InvalidArgumentError("shape has too many elements");
    }
    count *= d;
  }
  return count;
}

// Splits `file` into its header text and data, checking the magic and the
// version. Only 1.0 and 2.0 exist for plain dtypes; 3.0 differs only in
// allowing a UTF-8 header, which a float32 array never needs.
absl::Status SplitFile(std::string_view file, std::string_view* header,
                       std::string_view* data) {
  if (file.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("bad magic: not a .npy file");
  }
  if (file.size() < kMagic.size() + 2) {
    return absl::InvalidArgumentError("truncated before the version");
  }
  const int major = static_cast<uint8_t>(file[6]);
  const int minor = static_cast<uint8_t>(file[7]);
  if ((major != 1 && major != 2) || minor != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "format version ", major, ".", minor, " (only 1.0 and 2.0 are read)"));
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t header_start = 8 + length_bytes;
  if (file.size() < header_start) {
    return absl::InvalidArgumentError("truncated header length");
  }
  uint64_t length = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    length |= uint64_t{static_cast<uint8_t>(file[8 + i])} << (8 * i);
  }
  if (file.size() - header_start < length) {
    return absl::InvalidArgumentError("truncated header");
  }
  *header = file.substr(header_start, length);
  *data = file.substr(header_start + length);
  return absl::OkStatus();
}

absl::StatusOr<NpyArray> Decode(std::string_view file) {
  std::string_view header_text, data;
  absl::Status status = SplitFile(file, &header_text, &data);
  if (!status.ok()) return status;
  absl::StatusOr<NpyHeader> header = ParseHeader(header_text);
  if (!header.ok()) return header.status();
  absl::StatusOr<uint64_t> count = Float32Count(*header);
  if (!count.ok()) return count.status();
  const uint64_t expected = *count * sizeof(float);
  if (data.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        data.size() < expected ? "truncated data" : "trailing bytes after data",
        ": shape needs ", expected, " bytes, file has ", data.size()));
  }
  NpyArray array;
  array.shape = std::move(header->shape);
  array.data.resize(*count);
  if (expected > 0) std::memcpy(array.data.data(), data.data(), expected);
  return array;
}

// The header NumPy writes, padded with spaces and ended with '\n' so that
// the data starts at a multiple of kHeaderAlignment; with its magic,
// version and length prefix (1.0 unless the header needs 2.0's 4-byte length).
std::string EncodeHeader(const std::vector<int64_t>& shape) {
  std::string dict = absl::StrCat(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (",
      absl::StrJoin(shape, ", "), shape.size() == 1 ? ",), }" : "), }");
  for (const int major : {1, 2}) {
    const size_t prefix = 8 + (major == 1 ? 2 : 4);
    const size_t unpadded = prefix + dict.size() + 1;
    const size_t padded =
        (unpadded + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
    const uint64_t length = padded - prefix;
    if (major == 1 && length > 0xffff) continue;
    std::string out(kMagic);
    out.push_back(static_cast<char>(major));
    out.push_back('\0');
    for (size_t i = 0; i < prefix - 8; ++i) {
      out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
    }
    out += dict;
    out.append(padded - unpadded, ' ');
    out.push_back('\n');
    return out;
  }
  return "";  // Unreachable: 2.0's 4-byte length holds any shape we write.
}

}  // namespace

absl::StatusOr<NpyArray> ReadNpyFloat32(const std::string& path) {
  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<NpyArray> array = Decode(std::string_view(
      reinterpret_cast<const char*>((*file)->data()), (*file)->size()));
  if (!array.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", array.status().message()));
  }
  return array;
}

absl::Status WriteNpyFloat32(const std::string& path, const NpyArray& array) {
  uint64_t count = 1;
  for (const int64_t dim : array.shape) count *= static_cast<uint64_t>(dim);
  if (count != array.data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write ", path, ": shape [", absl::StrJoin(array.shape, ", "),
        "] holds ", count, " values, data has ", array.data.size()));
  }
  const std::string header = EncodeHeader(array.shape);
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  }
  errno = 0;
  const bool written =
      std::fwrite(header.data(), 1, header.size(), out) == header.size() &&
      std::fwrite(array.data.data(), sizeof(float), array.data.size(), out) ==
          array.data.size();
  // A short write need not set errno; it is reported as an I/O error then.
  int error_number = written ? 0 : (errno != 0 ? errno : EIO);
  // fclose flushes the buffer, so its failure is a failed write too.
  if (std::fclose(out) != 0 && error_number == 0) {
    error_number = errno != 0 ? errno : EIO;
  }
  if (error_number != 0) {
    return absl::ErrnoToStatus(error_number,
                               absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace edge
