// The one way gda's C++ (src/dist/shim.cpp, src/model/kernels.cpp) hands an
// error to Rust: every extern "C" entry runs its body through `guarded`,
// which catches what libtorch throws and copies the message into `err`, so
// no C++ exception crosses into Rust.
#pragma once

#include <cstring>
#include <exception>
#include <string>

namespace gda_ffi {

// c10's messages end in a C++ backtrace ("Exception raised from ..."): only
// the sentence before it means anything to a user.
inline void fail(char* err, size_t len, const char* what) {
  if (err == nullptr || len == 0) return;
  std::string text(what);
  auto cut = text.find("\nException raised from");
  if (cut != std::string::npos) text.resize(cut);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::strncpy(err, text.c_str(), len - 1);
  err[len - 1] = '\0';
}

// 0 when body returns, −1 with the message in err when it throws.
template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    fail(err, len, e.what());
  } catch (...) {
    fail(err, len, "unknown C++ exception");
  }
  return -1;
}

}  // namespace gda_ffi
