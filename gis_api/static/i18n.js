// twin viewer texts: Chinese first, English as a switch. window.twinI18n.t(key) gives the text
// in the current language; layer titles, attribute names and enumerated values live here.
(function () {
  "use strict";
  const zh = {
    "app.title": "数字孪生一张图", "app.sub": "乡镇数字孪生 · 综合指挥",
    "panel.layers": "图层", "panel.view": "视图", "panel.stats": "统计", "panel.card": "要素信息",
    "view.tilt": "三维建筑（倾斜）", "view.lang": "English", "view.home": "全镇视图",
    "status.loading": "加载中…", "status.loaded": "已加载", "status.error": "错误",
    "link.api": "OGC 服务", "link.docs": "接口文档", "link.layers": "图层目录", "link.field": "移动端",
    "stats.events_open": "未结案事件", "stats.events_total": "事件总数", "stats.devices_online": "设备在线",
    "stats.buildings": "建筑", "stats.by_status": "事件状态",
    "auth.login": "登录", "auth.logout": "退出", "auth.user": "用户名", "auth.pass": "密码", "auth.submit": "登录",
    "auth.failed": "用户名或密码错误", "auth.locked": "登录失败次数过多，账户已锁定", "auth.anonymous": "访客（公开图层）", "auth.anonymous_as": "访客（未登录）",
    "role.admin": "管理员", "role.operator": "值班员", "role.planner": "规划人员", "role.field": "网格员", "role.public": "公众", "role.exchange": "数据交换",
    "group.base": "底图", "group.grids": "网格", "group.planning": "国土空间规划", "group.built": "建筑与道路",
    "group.pipes": "地下管线", "group.iot": "物联感知", "group.cameras": "视频监控", "group.events": "事件",
    "layer.ortho": "正射影像", "layer.grids": "管理网格", "layer.evaluation_grids": "评价网格",
    "layer.evaluation_points": "评价点位", "layer.buildings": "建筑", "layer.pipelines": "地下管线",
    "layer.pipe_nodes": "管点（检查井、阀门）", "layer.farmland": "耕地", "layer.zones": "三区",
    "layer.control_lines": "三线", "layer.devices": "物联设备", "layer.cameras": "摄像头",
    "layer.events": "事件", "layer.roads": "道路", "layer.construction_sites": "建筑工地",
    "panel.live": "实时", "live.updates": "实时更新", "live.online": "设备在线", "live.alarms": "报警设备",
    "live.events": "未结案事件（实时）", "live.connected": "实时连接正常", "live.disconnected": "实时连接中断",
    "view.scene": "三维场景", "card.readings": "近 24 小时读数（15 分钟均值）", "card.no_readings": "暂无读数",
    "card.no_video": "无可播放的视频流", "card.video_failed": "视频播放失败",
    "panel.analysis": "分析", "analysis.tool.section": "横断面", "analysis.tool.trace": "流向追踪",
    "analysis.tool.burst": "爆管分析", "analysis.tool.buffer": "缓冲区", "analysis.tool.overlap": "规划冲突",
    "analysis.tool.dust": "扬尘热力", "analysis.finish": "完成", "analysis.clear": "清除",
    "analysis.hint.section": "在地图上点击两点画剖切线", "analysis.hint.trace": "点击一条管线：流向与上下游",
    "analysis.hint.burst": "点击爆管位置（供水、燃气等有阀门的管网）", "analysis.hint.buffer": "点击圆心，再点击确定半径",
    "analysis.hint.overlap": "依次点击项目范围的各顶点，双击或点“完成”结束",
    "analysis.running": "分析中…", "analysis.failed": "分析失败", "analysis.login": "分析需要“分析”权限：请先登录",
    "analysis.start_pipe": "起始管段", "analysis.utility": "管线类别", "analysis.downstream": "下游",
    "analysis.upstream": "上游", "analysis.arrows": "流向箭头", "analysis.isolated": "关阀停运管段",
    "analysis.cut_off": "失去水源管段", "analysis.valve": "需关闭阀门", "analysis.kind": "类型",
    "analysis.building": "受影响建筑", "analysis.address": "地址",
    "analysis.burst_summary": "需关闭阀门 {valves} 个，受影响建筑 {buildings} 栋（{households} 户）",
    "analysis.layer": "图层", "analysis.count": "数量", "analysis.name": "名称", "analysis.distance": "距离",
    "analysis.radius": "半径", "analysis.project_area": "项目用地", "analysis.farmland": "耕地（合计）",
    "analysis.pbf": "其中永久基本农田", "analysis.item": "项目", "analysis.mu": "亩",
    "analysis.conflict": "冲突：占用生态保护红线或永久基本农田", "analysis.no_conflict": "无冲突",
    "analysis.monitor": "监测点", "analysis.score": "影响得分",
    "analysis.dust_summary": "扬尘监测点 {monitors} 个，PM10 超标 {warnings} 个",
  };
  const en = {
    "app.title": "twin", "app.sub": "digital twin of the town · command centre",
    "panel.layers": "Layers", "panel.view": "View", "panel.stats": "Statistics", "panel.card": "Feature",
    "view.tilt": "3D buildings (tilt)", "view.lang": "中文", "view.home": "Whole town",
    "status.loading": "loading…", "status.loaded": "loaded", "status.error": "error",
    "link.api": "OGC API", "link.docs": "API docs", "link.layers": "layers", "link.field": "field page",
    "stats.events_open": "open events", "stats.events_total": "events", "stats.devices_online": "devices online",
    "stats.buildings": "buildings", "stats.by_status": "events by status",
    "auth.login": "Log in", "auth.logout": "Log out", "auth.user": "user name", "auth.pass": "password",
    "auth.submit": "Log in", "auth.failed": "wrong user name or password",
    "auth.locked": "too many failed log-ins: the account is locked", "auth.anonymous": "guest (public layers)",
    "auth.anonymous_as": "guest (not logged in)", "role.admin": "admin", "role.operator": "operator", "role.planner": "planner",
    "role.field": "field staff", "role.public": "public", "role.exchange": "data exchange",
    "group.base": "Base", "group.grids": "Grids", "group.planning": "Planning", "group.built": "Buildings and roads",
    "group.pipes": "Pipelines", "group.iot": "IoT", "group.cameras": "Cameras", "group.events": "Events",
    "layer.ortho": "Orthophoto", "layer.grids": "Management grids", "layer.evaluation_grids": "Evaluation grids",
    "layer.evaluation_points": "Evaluation points", "layer.buildings": "Buildings",
    "layer.pipelines": "Underground pipelines", "layer.pipe_nodes": "Pipe nodes", "layer.farmland": "Farmland",
    "layer.zones": "Three zones", "layer.control_lines": "Three lines", "layer.devices": "IoT devices",
    "layer.cameras": "Cameras", "layer.events": "Events", "layer.roads": "Roads",
    "layer.construction_sites": "Construction sites",
    "panel.live": "Live", "live.updates": "live updates", "live.online": "devices online", "live.alarms": "devices in alarm",
    "live.events": "open events (live)", "live.connected": "live stream connected", "live.disconnected": "live stream down",
    "view.scene": "3D scene", "card.readings": "last 24 h (15-minute means)", "card.no_readings": "no readings yet",
    "card.no_video": "no playable video stream", "card.video_failed": "video failed",
    "panel.analysis": "Analysis", "analysis.tool.section": "Cross-section", "analysis.tool.trace": "Flow trace",
    "analysis.tool.burst": "Burst pipe", "analysis.tool.buffer": "Buffer", "analysis.tool.overlap": "Planning overlap",
    "analysis.tool.dust": "Dust heat", "analysis.finish": "Finish", "analysis.clear": "Clear",
    "analysis.hint.section": "click two points on the map: the cut line", "analysis.hint.trace": "click a pipe: flow and up/downstream",
    "analysis.hint.burst": "click the burst pipe (a pressure network with valves)", "analysis.hint.buffer": "click the centre, then the radius",
    "analysis.hint.overlap": "click the project's corners; double-click or Finish to end",
    "analysis.running": "running…", "analysis.failed": "analysis failed", "analysis.login": "analysis needs the analyse permission: please log in",
    "analysis.start_pipe": "start pipe", "analysis.utility": "utility", "analysis.downstream": "downstream",
    "analysis.upstream": "upstream", "analysis.arrows": "flow arrows", "analysis.isolated": "isolated pipes",
    "analysis.cut_off": "pipes cut off", "analysis.valve": "valve to close", "analysis.kind": "kind",
    "analysis.building": "building cut off", "analysis.address": "address",
    "analysis.burst_summary": "close {valves} valves; {buildings} buildings cut off ({households} households)",
    "analysis.layer": "layer", "analysis.count": "count", "analysis.name": "name", "analysis.distance": "distance",
    "analysis.radius": "radius", "analysis.project_area": "project", "analysis.farmland": "farmland (all)",
    "analysis.pbf": "of which permanent basic", "analysis.item": "item", "analysis.mu": "mu",
    "analysis.conflict": "conflict: enters the ecological red line or permanent basic farmland", "analysis.no_conflict": "no conflict",
    "analysis.monitor": "monitor", "analysis.score": "score",
    "analysis.dust_summary": "{monitors} dust monitors, {warnings} over their PM10 limit",
  };
  // metric names on charts
  const metricsZh = {
    pm10: "PM10（μg/m³）", pm25: "PM2.5（μg/m³）", water_level_m: "水位（米）", smoke_density: "烟雾浓度",
    temperature_c: "温度（℃）", lel_pct: "可燃气体（%LEL）", voltage_v: "电压（V）", current_a: "电流（A）",
    power_kw: "功率（kW）", energy_kwh: "电量（kWh）",
  };
  // attribute names on feature cards (English keeps the column names)
  const fieldsZh = {
    id: "编号", code: "编码", name: "名称", level: "级别", parent_code: "上级编码", use: "用途",
    floors: "层数", height_m: "高度（米）", address: "地址", built_year: "建成年份", households: "户数",
    residents: "人口", utility: "管线类别", material: "材质", diameter_mm: "管径（毫米）",
    depth_m: "埋深（米）", start_invert_m: "起点管底高程（米）", end_invert_m: "终点管底高程（米）",
    owner: "权属单位", kind: "类型", status: "状态", category: "类别", source: "来源",
    reported_at: "上报时间", closed_at: "结案时间", grade: "等级", is_permanent_basic: "永久基本农田",
    crop: "作物", area_m2: "面积（平方米）", road_class: "道路等级", traffic_volume: "日交通量",
    heading_deg: "朝向（度）", fov_deg: "视场角（度）", range_m: "可视距离（米）", stream_url: "视频流",
    dust_controlled: "扬尘管控", score: "得分", village_code: "村编码", grid_code: "网格编码",
    mount_height_m: "安装高度（米）", protocol: "协议", tags: "标签", streams: "播放地址",
    gb28181_id: "国标编码", metrics: "监测指标", thresholds: "报警阈值", description: "描述", installed_year: "安装年份", installed_on: "安装日期", contract_no: "承包合同号", grid_worker: "网格员",
  };
  const valuesZh = {
    town: "镇", village: "村（社区）", unit: "单元网格", residential: "住宅", commercial: "商业",
    industrial: "工业", public: "公共", water: "给水", water_supply: "给水", rain: "雨水",
    stormwater: "雨水", sewage: "污水", gas: "燃气", heat: "热力", power: "电力", electric: "电力",
    telecom: "通信", online: "在线", offline: "离线", alarm: "报警", fault: "故障", reported: "已上报",
    verified: "已核实", dispatched: "已派遣", handled: "已处置", closed: "已结案", ecological: "生态空间",
    agricultural: "农业空间", urban: "城镇空间", ecological_red_line: "生态保护红线",
    permanent_basic_farmland: "永久基本农田", urban_development_boundary: "城镇开发边界",
    arterial: "主干路", collector: "次干路", local: "支路", true: "是", false: "否",
  };

  function pick() {
    const saved = localStorage.getItem("twin.lang");
    if (saved === "zh" || saved === "en") return saved;
    const q = new URLSearchParams(location.search).get("lang");
    if (q === "zh" || q === "en") return q;
    // Chinese first: English only for a browser that prefers English and names no Chinese at all
    const langs = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "zh-CN"])
      .map((l) => String(l).toLowerCase());
    if (langs.some((l) => l.startsWith("zh"))) return "zh";
    return langs[0] && langs[0].startsWith("en") ? "en" : "zh";
  }

  const state = { lang: pick() };
  const locale = () => (state.lang === "zh" ? "zh-CN" : "en-GB");
  window.twinI18n = {
    get lang() { return state.lang; },
    locale,
    t: (key) => (state.lang === "zh" ? zh : en)[key] || en[key] || key,
    metric: (m) => (state.lang === "zh" ? metricsZh[m] || m : m),
    field: (k) => (state.lang === "zh" ? fieldsZh[k] || k : k),
    value: (v) => {
      if (typeof v === "boolean") return state.lang === "zh" ? valuesZh[String(v)] : String(v);
      if (typeof v === "number") return v.toLocaleString(locale(), { maximumFractionDigits: 2 });
      if (typeof v === "string") {
        if (/^\d{4}-\d{2}-\d{2}T/.test(v)) {
          const d = new Date(v);
          if (!isNaN(d)) return d.toLocaleString(locale(), { hour12: false });
        }
        return state.lang === "zh" ? valuesZh[v] || v : v;
      }
      return v === null || v === undefined ? "—" : JSON.stringify(v);
    },
    set: (lang) => { state.lang = lang; localStorage.setItem("twin.lang", lang); },
  };
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
})();
