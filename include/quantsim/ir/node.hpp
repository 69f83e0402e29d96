// Graph nodes and their typed attributes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/core/tensor.hpp>

namespace quantsim {

/// One attribute value, as ONNX types them (INT, FLOAT, STRING, INTS, FLOATS, STRINGS, TENSOR).
using attribute_value = std::variant<std::int64_t, float, std::string, std::vector<std::int64_t>,
                                     std::vector<float>, std::vector<std::string>, tensor>;

/// A node: one operation. Inputs and outputs are value names; an empty input name marks an omitted optional input.
struct node {
    std::string name;     ///< unique within its graph (the importer names unnamed nodes)
    std::string op_type;  ///< ONNX op type, e.g. "Conv"
    std::string domain;   ///< "" for the default ONNX domain
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    std::map<std::string, attribute_value, std::less<>> attrs;

    /// "node 'conv1' (Conv)": used in every error message about this node.
    std::string describe() const { return "node '" + name + "' (" + op_type + ")"; }

    bool has_attr(std::string_view key) const { return attrs.find(key) != attrs.end(); }

    /// Typed attribute access. Without a default a missing attribute is an error; a wrong type is always an error.
    /// Errors are graph_error naming the node and the attribute.
    std::int64_t attr_int(std::string_view key, std::optional<std::int64_t> def = std::nullopt) const {
        return get<std::int64_t>(key, def, "an int");
    }
    float attr_float(std::string_view key, std::optional<float> def = std::nullopt) const {
        // ONNX writers sometimes store float attributes as ints (alpha=1); accept both.
        if (auto it = attrs.find(key); it != attrs.end()) {
            if (auto* i = std::get_if<std::int64_t>(&it->second)) return static_cast<float>(*i);
        }
        return get<float>(key, def, "a float");
    }
    std::string attr_string(std::string_view key, std::optional<std::string> def = std::nullopt) const {
        return get<std::string>(key, def, "a string");
    }
    std::vector<std::int64_t> attr_ints(std::string_view key,
                                        std::optional<std::vector<std::int64_t>> def = std::nullopt) const {
        return get<std::vector<std::int64_t>>(key, def, "a list of ints");
    }
    std::vector<float> attr_floats(std::string_view key,
                                   std::optional<std::vector<float>> def = std::nullopt) const {
        return get<std::vector<float>>(key, def, "a list of floats");
    }
    tensor attr_tensor(std::string_view key) const { return get<tensor>(key, std::nullopt, "a tensor"); }

    /// Number of inputs that are present (not omitted); trailing empty names are not counted.
    std::size_t num_present_inputs() const {
        std::size_t n = inputs.size();
        while (n > 0 && inputs[n - 1].empty()) --n;
        return n;
    }
    bool has_input(std::size_t i) const { return i < inputs.size() && !inputs[i].empty(); }

private:
    template <class T>
    T get(std::string_view key, const std::optional<T>& def, const char* type_name) const {
        auto it = attrs.find(key);
        if (it == attrs.end()) {
            if (def) return *def;
            QUANTSIM_THROW(graph_error, describe(), ": required attribute '", key, "' is missing");
        }
        if (auto* v = std::get_if<T>(&it->second)) return *v;
        QUANTSIM_THROW(graph_error, describe(), ": attribute '", key, "' must be ", type_name);
    }
};

}  // namespace quantsim
