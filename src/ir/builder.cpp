// graph_builder (include/quantsim/ir/builder.hpp).
#include <quantsim/ir/builder.hpp>

namespace quantsim {

graph_builder::graph_builder(std::string graph_name, std::int64_t opset) {
    g_.name = std::move(graph_name);
    g_.opset = opset;
}

std::string graph_builder::fresh(std::string_view base) {
    std::string b(base);
    for (;;) {
        std::string c = b + "_" + std::to_string(counter_++);
        if (!g_.is_defined(c) && g_.find_node(c) < 0) return c;
    }
}

value_ref graph_builder::input(std::string name, shape_t shape, dtype type, std::vector<std::string> dim_params) {
    if (name.empty()) QUANTSIM_THROW(invalid_argument, "graph_builder::input: empty name");
    if (g_.is_defined(name)) QUANTSIM_THROW(invalid_argument, "graph_builder::input: '", name, "' is already defined");
    if (!dim_params.empty() && dim_params.size() != shape.size())
        QUANTSIM_THROW(invalid_argument, "graph_builder::input '", name, "': ", dim_params.size(),
                       " dim_params for a shape of rank ", shape.size());
    for (auto d : shape)
        if (d < -1) QUANTSIM_THROW(invalid_argument, "graph_builder::input '", name, "': invalid dimension ", d, " in ", to_string(shape));
    if (dim_params.empty() && !shape.empty() && shape[0] == -1 && !batch_param.empty()) {
        dim_params.assign(shape.size(), std::string());
        dim_params[0] = batch_param;
    }
    value_info v;
    v.name = name;
    v.type = type;
    v.shape = std::move(shape);
    v.dim_params = std::move(dim_params);
    v.shape_known = true;
    g_.inputs.push_back(std::move(v));
    return name;
}

value_ref graph_builder::param(std::string name, tensor value) {
    if (name.empty()) QUANTSIM_THROW(invalid_argument, "graph_builder::param: empty name");
    if (!value.defined()) QUANTSIM_THROW(invalid_argument, "graph_builder::param '", name, "': empty tensor");
    if (g_.is_defined(name)) QUANTSIM_THROW(invalid_argument, "graph_builder::param: '", name, "' is already defined");
    g_.params.emplace(name, std::move(value));
    return name;
}

value_ref graph_builder::constant(tensor value) { return param(fresh("const"), std::move(value)); }

value_ref graph_builder::constant_ints(std::vector<std::int64_t> values) {
    const auto n = static_cast<std::int64_t>(values.size());
    return constant(tensor::from(values, {n}));
}

value_ref graph_builder::constant_scalar(float value) { return constant(tensor::scalar(value)); }

value_ref graph_builder::node(std::string op_type, std::vector<value_ref> inputs, attribute_map attrs,
                              node_options options) {
    options.num_outputs = 1;
    return node_multi(std::move(op_type), std::move(inputs), std::move(attrs), std::move(options)).front();
}

std::vector<value_ref> graph_builder::node_multi(std::string op_type, std::vector<value_ref> inputs,
                                                 attribute_map attrs, node_options options) {
    if (op_type.empty()) QUANTSIM_THROW(invalid_argument, "graph_builder::node: empty op type");
    if (options.num_outputs < 1)
        QUANTSIM_THROW(invalid_argument, "graph_builder::node ", op_type, ": num_outputs must be at least 1");
    if (!options.output_names.empty() && options.output_names.size() != static_cast<std::size_t>(options.num_outputs))
        QUANTSIM_THROW(invalid_argument, "graph_builder::node ", op_type, ": ", options.output_names.size(),
                       " output names for ", options.num_outputs, " outputs");
    quantsim::node n;
    n.op_type = op_type;
    n.domain = options.domain;
    n.name = options.name.empty() ? fresh(op_type) : options.name;
    if (g_.find_node(n.name) >= 0)
        QUANTSIM_THROW(invalid_argument, "graph_builder::node: node name '", n.name, "' is already used");
    for (const auto& i : inputs) {
        if (!i.name.empty() && !g_.is_defined(i.name))
            QUANTSIM_THROW(graph_error, "graph_builder::node '", n.name, "' (", op_type, "): input '", i.name,
                           "' is not defined yet (add inputs, params and producing nodes first)");
        n.inputs.push_back(i.name);
    }
    while (!n.inputs.empty() && n.inputs.back().empty()) n.inputs.pop_back();
    std::vector<value_ref> outs;
    for (int k = 0; k < options.num_outputs; ++k) {
        std::string o = options.output_names.empty()
                            ? (options.num_outputs == 1 ? fresh(n.name + "_out") : fresh(n.name + "_out" + std::to_string(k)))
                            : options.output_names[static_cast<std::size_t>(k)];
        if (g_.is_defined(o))
            QUANTSIM_THROW(invalid_argument, "graph_builder::node '", n.name, "': output name '", o, "' is already defined");
        n.outputs.push_back(o);
        outs.emplace_back(o);
    }
    n.attrs = std::move(attrs);
    g_.nodes.push_back(std::move(n));
    return outs;
}

void graph_builder::output(const value_ref& value) {
    if (!g_.is_defined(value.name))
        QUANTSIM_THROW(graph_error, "graph_builder::output: '", value.name, "' is not defined");
    value_info v;
    v.name = value.name;
    if (const value_info* known = g_.info(value.name)) v = *known;
    v.name = value.name;
    g_.outputs.push_back(std::move(v));
}

graph graph_builder::build(bool validate_ops) {
    validate_options vo;
    vo.check_ops = validate_ops;
    vo.check_shapes = validate_ops;
    g_.validate(vo);
    graph r = std::move(g_);
    g_ = graph();
    counter_ = 0;
    return r;
}

}  // namespace quantsim
