// Builds ONNX ModelProtos by hand for the importer tests (valid ones, and deliberately malformed ones).
#pragma once

#ifndef ONNX_ML
#define ONNX_ML 1
#endif
#ifndef ONNX_NAMESPACE
#define ONNX_NAMESPACE onnx
#endif
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace quantsim::test {

struct onnx_model_maker {
    onnx::ModelProto model;
    onnx::GraphProto* g;

    explicit onnx_model_maker(std::int64_t opset = 13) {
        model.set_ir_version(opset >= 13 ? 7 : 4);
        auto* o = model.add_opset_import();
        o->set_domain("");
        o->set_version(opset);
        g = model.mutable_graph();
        g->set_name("test");
    }

    static void set_type(onnx::ValueInfoProto* v, std::int32_t elem, const std::vector<std::int64_t>& dims,
                         const std::vector<std::string>& params = {}) {
        auto* tt = v->mutable_type()->mutable_tensor_type();
        tt->set_elem_type(elem);
        auto* s = tt->mutable_shape();
        for (std::size_t i = 0; i < dims.size(); ++i) {
            auto* d = s->add_dim();
            if (i < params.size() && !params[i].empty()) d->set_dim_param(params[i]);
            else if (dims[i] >= 0) d->set_dim_value(dims[i]);
        }
    }
    onnx_model_maker& input(const std::string& name, const std::vector<std::int64_t>& dims,
                            const std::vector<std::string>& params = {}, std::int32_t elem = 1) {
        auto* v = g->add_input();
        v->set_name(name);
        set_type(v, elem, dims, params);
        return *this;
    }
    onnx_model_maker& output(const std::string& name, std::int32_t elem = 1) {
        auto* v = g->add_output();
        v->set_name(name);
        v->mutable_type()->mutable_tensor_type()->set_elem_type(elem);
        return *this;
    }
    static void fill(onnx::TensorProto* t, const std::string& name, const std::vector<std::int64_t>& dims,
                     const std::vector<float>& values) {
        t->set_name(name);
        t->set_data_type(1);
        for (auto d : dims) t->add_dims(d);
        t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
    }
    onnx_model_maker& init(const std::string& name, const std::vector<std::int64_t>& dims, const std::vector<float>& values) {
        fill(g->add_initializer(), name, dims, values);
        return *this;
    }
    onnx_model_maker& init_i64(const std::string& name, const std::vector<std::int64_t>& values) {
        auto* t = g->add_initializer();
        t->set_name(name);
        t->set_data_type(7);
        t->add_dims(static_cast<std::int64_t>(values.size()));
        for (auto v : values) t->add_int64_data(v);
        return *this;
    }
    onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& ins, const std::vector<std::string>& outs,
                          const std::string& name = "") {
        auto* n = g->add_node();
        n->set_op_type(op);
        n->set_name(name);
        for (const auto& i : ins) n->add_input(i);
        for (const auto& o : outs) n->add_output(o);
        return n;
    }
    static void attr_i(onnx::NodeProto* n, const std::string& k, std::int64_t v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto::INT);
        a->set_i(v);
    }
    static void attr_f(onnx::NodeProto* n, const std::string& k, float v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto::FLOAT);
        a->set_f(v);
    }
    static void attr_s(onnx::NodeProto* n, const std::string& k, const std::string& v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto::STRING);
        a->set_s(v);
    }
    static void attr_ints(onnx::NodeProto* n, const std::string& k, const std::vector<std::int64_t>& v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto::INTS);
        for (auto x : v) a->add_ints(x);
    }
    static void attr_floats(onnx::NodeProto* n, const std::string& k, const std::vector<float>& v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto::FLOATS);
        for (auto x : v) a->add_floats(x);
    }
    /// A Constant node holding a float tensor.
    onnx::NodeProto* constant(const std::string& out, const std::vector<std::int64_t>& dims, const std::vector<float>& values) {
        auto* n = node("Constant", {}, {out});
        auto* a = n->add_attribute();
        a->set_name("value");
        a->set_type(onnx::AttributeProto::TENSOR);
        fill(a->mutable_t(), "", dims, values);
        return n;
    }
    std::string bytes() const {
        std::string s;
        model.SerializeToString(&s);
        return s;
    }
};

}  // namespace quantsim::test
