// libstdc++ streams, strings, maps and exceptions across restores.
#include <chrono>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

int main() {
  std::map<std::string, long> counts;
  for (int r = 0; r < 100; ++r) {
    std::ostringstream word;
    word << "w" << (r * 7919) % 13;
    counts[word.str()] += r;
    try {
      if (r % 5 == 0) throw std::runtime_error("round " + std::to_string(r));
    } catch (const std::exception& e) {
      std::cout << "caught " << e.what() << "\n";
    }
    long total = 0;
    for (const auto& [k, v] : counts) total += v * static_cast<long>(k.size());
    std::cout << "round " << r << " keys " << counts.size() << " total " << total << std::endl;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  return 0;
}
